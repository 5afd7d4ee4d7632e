# salt '*' state.apply bay  -- turns a Debian server into a Bay node.
include:
  - bay.python
  - bay.docker
  - bay.consul
  - bay.haproxy
  - bay.cadvisor
  - bay.registry
  - bay.metrics
  - bay.monitoring
  - bay.kafka
  - bay.logs
  - bay.mesos
