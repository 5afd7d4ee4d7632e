# Example `bay:` pillar for a three-node site, with every key documented.
# Defaults live in states/bay/defaults.yaml; anything here overrides them.
# The whole tree is validated (bay_salt.settings) before any state runs: an
# unknown key, an unknown role, a Consul server that is not a node, a negative
# size or a malformed address fails the run with a message naming the key.
bay:
  # Name of this Bay cluster (labels, KV prefix scoping, dashboards).
  cluster: prod

  # The nodes, by Salt minion id.
  nodes:
    bay-a1:
      # The node's own address: Consul binds/advertises it, HAProxy of other
      # nodes reach its containers there. Omit to take it from grains (first
      # address of the first interface that is not lo/docker*/br-*/veth*).
      address: 10.10.0.11
      # What the node is for: worker (runs services), registry (runs image
      # registry instances), mesos-agent (runs a Mesos agent; needs bay:mesos).
      roles: [worker]
    bay-a2:
      address: 10.10.0.12
      roles: [worker, registry]
    bay-a3:
      address: 10.10.0.13
      roles: [worker, registry]

  # The Python that runs salt-minion; Bay's modules import these packages.
  python:
    bin_env: /opt/bay/venv           # venv (or Python prefix) of the minion
    packages: [docker, py-consul, pydantic, pyyaml, jinja2, rich, aiohttp, hdfs, tenacity, typer]
    find_links: []                   # local wheel dirs, e.g. [/opt/bay/wheelhouse]
    no_index: false                  # true: never reach a package index

  docker:
    package: docker.io               # Debian's Docker engine package
    service: docker
    data_root: /var/lib/docker
    log_driver: json-file            # container logs, rotated by the two keys below
    log_max_size: 10m                # rotate at this size (k, m or g suffix)
    log_max_file: 3                  # keep this many files per container
    live_restore: true               # containers survive a dockerd restart
    registry: "10.10.0.12:5000"      # Bay's image registry (host:port): insecure registry and mirror

  consul:
    # Where the consul package comes from: hashicorp (HashiCorp's apt
    # repository), debian-bullseye (Debian bullseye's 1.8.7, from this node's
    # own mirror, pinned low), or none (already installed).
    source: hashicorp
    hashicorp_repo: https://apt.releases.hashicorp.com
    package: consul
    datacenter: bay
    data_dir: /var/lib/consul
    config_dir: /etc/consul.d
    # Minion ids that run Consul as servers (bootstrap_expect = how many);
    # every other node runs a client. Empty: the first node by name.
    servers: [bay-a1, bay-a2, bay-a3]
    http_port: 8500
    dns_port: 8600
    ui: false
    raft_multiplier: 1               # servers' Raft timings (HashiCorp's production value; Consul's default is 5)
    # Autopilot's removal of failed servers from the Raft peers. Off: a server
    # back from a reboot is a voter again at once, so restarting the servers one
    # after another never drops below quorum (with it on, a returning server
    # waits out autopilot's stabilisation as a non-voter).
    cleanup_dead_servers: false
    # Gossip encryption key, base64 of 16/24/32 bytes (`consul keygen`). A secret:
    # keep it in an encrypted pillar (e.g. GPG renderer); Salt's state output
    # never shows the config diff that contains it.
    encrypt: ""

  haproxy:
    package: haproxy
    config: /etc/haproxy/haproxy.cfg
    # Service frontends and backends; bay-lb-sync writes it from Consul KV
    # (never edit by hand: it states what the Runtime API holds).
    services_config: /etc/haproxy/bay-services.cfg
    # Runtime API socket (admin level, mode 0600, root only)
    socket: /run/haproxy/admin.sock
    stats_port: 8404                 # http://NODE:8404/stats
    maxconn: 8000

  cadvisor:
    package: cadvisor                # Debian's cadvisor
    port: 8080                       # API: http://NODE:8080/api/v1.3/
    housekeeping_interval: 2s

  # Bay's image registry (bay_salt.registry: OCI Distribution) on the nodes
  # with role `registry`. The instances are stateless and share one storage,
  # so any number of them serve the cluster; each registers itself in Consul
  # KV, and every node's HAProxy serves them all on `port`. Point
  # bay:docker:registry at NODE:port (any node: its HAProxy).
  registry:
    port: 5000                       # HAProxy frontend on every node
    instance_port: 5001              # each instance on its registry node
    # hdfs://NAMENODE:HTTPPORT[,NAMENODE2:HTTPPORT]/PATH (WebHDFS; several NameNodes for HA),
    # or file:///PATH (a disk: only one instance unless it is shared)
    storage: hdfs://10.10.0.5:9870,10.10.0.6:9870/bay-registry
    gc_grace: 3600                   # seconds an unreferenced blob is kept (pushes in flight)
    gc_interval: 3600                # each instance collects garbage this often, online (0: never)
    cache_dir: /var/cache/bay-registry  # blobs served from each instance's disk once read from HDFS
    cache_size: 10Gi                 # ... up to this much (least recently served go first); 0: no cache
    blob_redirect: false             # without a cache: blob GETs go straight to a DataNode (clients must reach it)

  # The control loop (salt-master engine bay_controller). It works from the
  # specs `bay.deploy` accepted (KV bay/specs/), never from undeployed pillar
  # edits. A crashed instance is restarted at once; the n-th restart in a row
  # of a group waits
  # restart_backoff * 2**(n-1) s (at most restart_backoff_max); after
  # crash_loop_restarts in a row the group is marked failed (event
  # bay/group/failed) and no longer restarted. A run of backoff_reset seconds
  # clears the count. Service containers that KV does not know and that are
  # older than stray_age seconds are removed (strays). Groups with an
  # autoscale policy (pillar/services.sls) are measured and decided on every
  # autoscale_interval seconds; an instance removed by a scale-down leaves
  # every HAProxy, serves what it has for scale_down_drain seconds, then stops.
  controller:
    restart_backoff: 1.0
    restart_backoff_max: 60.0
    crash_loop_restarts: 8
    backoff_reset: 300.0
    stray_age: 120.0
    autoscale_interval: 5.0
    scale_down_drain: 2.0
    # Every reconcile_interval seconds the controller compares what every live
    # node runs with KV and the deployed specs and heals any difference (a death
    # nobody reported, a hung container, a stray, a group short of its count).
    reconcile_interval: 3.0
    # A deploy holds its groups (the controller leaves them alone); one that
    # held them this long is taken for dead and the controller takes them back.
    deploy_timeout: 900.0

  # Services: see pillar/services.sls (validated by bay_salt.model.services).
  services: {}

  # Mesos agent, for sites that have Mesos packages (no repository reachable
  # from Bay's CI has them: only the rendered configuration is tested).
  mesos:
    enabled: false
    repo: ""                         # a full apt line for the site's Mesos repository
    package: mesos
    zk: ""                           # zk://host:2181,host:2181/mesos (required when enabled)
    containerizers: [docker, mesos]
    work_dir: /var/lib/mesos
    attributes: {}                   # e.g. {rack: r1}
    resources: {}                    # e.g. {cpus: 8, mem: 30000}
