"""What runs on every node: its daemons' configuration (:mod:`.nodefiles`,
:mod:`.aptsources`, :mod:`.capacity`), its service containers
(:mod:`.containers`), and Bay's node agents: ``bay-lb-sync`` (Consul KV ->
HAProxy, :mod:`.lbsync` over :mod:`.routing` and
:mod:`bay_salt.host.haproxy_runtime`)
and ``bay-events`` (:mod:`.events_agent`: Docker events, the instances' readiness
and liveness checks, events kept until the master has them)."""
