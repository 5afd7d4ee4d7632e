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
      # registry instances), mesos-agent (runs a Mesos agent; needs bay:mesos),
      # monitoring (runs Bay's Graphite; see bay:monitoring).
      roles: [worker, monitoring]
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
    # What each node's agent clears up after the engine: port-forwarding rules
    # and conntrack entries of addresses no container holds, veths in no
    # bridge, Bay's long-dead containers, dangling images and anonymous volumes
    # beyond a cap. Each finding is a log line (bay-events) and a metric.
    hygiene:
      interval: 10m                  # between two looks; 0: only when asked (bay node clean)
      remove: true                   # false: found and reported, not removed
      dead_after: 1h                 # a Bay container exited this long goes (its output kept first)
      images_kept: 5                 # dangling images beyond the newest 5 go
      volumes_kept: 5                # anonymous dangling volumes beyond the newest 5 go

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
    http_port: 8500                  # loopback: the node's own daemons and `consul` commands
    https_port: 8501                 # servers, on their address, with tls below: the master's way in
    dns_port: 8600
    ui: false
    raft_multiplier: 1               # servers' Raft timings (HashiCorp's production value; Consul's default is 5)
    # Autopilot's removal of failed servers from the Raft peers. Off: a server
    # back from a reboot is a voter again at once, so restarting the servers one
    # after another never drops below quorum (with it on, a returning server
    # waits out autopilot's stabilisation as a non-voter).
    cleanup_dead_servers: false
    # LAN gossip timings, the same on every agent: a node that stops answering
    # is suspected after one probe and declared failed 1-6 s later (2-5 s in
    # a few nodes). Consul's defaults (1s, 500ms, 4) take 5-12 s; a slower
    # network wants a longer probe_timeout, never one >= probe_interval.
    gossip_lan: {probe_interval: 500ms, probe_timeout: 300ms, suspicion_mult: 3}
    # Gossip encryption key, base64 of 16/24/32 bytes (`consul keygen`). A secret:
    # keep it in an encrypted pillar (e.g. GPG renderer); Salt's state output
    # never shows the config diff that contains it.
    encrypt: ""
    # ACLs, default deny: without a token nothing is readable or writable.
    # Each role's token is a UUID (`uuidgen`) and a secret; give each only to
    # the nodes that need it (targeted pillar files): every token on the
    # Consul servers (management bootstraps ACLs; `bay.consul` creates each
    # other role's policy and token with it), agent and reader on every node
    # (bay-lb-sync and bay-events read routes and instances), registry on the
    # registry nodes. The master reads the controller token from its own
    # /etc/bay/consul.token (mode 0600). Tokens never appear in Salt's output,
    # logs or KV.
    acl:
      enabled: true
      tokens:
        management: 6b4ff0ab-3d0f-4a51-8b55-8bc8d2a1d3c1
        controller: 2f6d3e2b-8c43-4a8f-9b67-44d45a9a2e10
        agent: 9d0c5c4e-2b7a-4a8e-8f13-0c1a8d8e5f22
        reader: 51d8a2f0-6f8c-4c0b-9b87-3a4a4c2f6e33
        registry: c3e9b1d4-7a2e-4f5b-8d91-5b6c7d8e9f44
      # each node's own agent token (node id -> SecretID, a UUID): Consul's node
      # identity, so it may write that node only and one node's root cannot
      # deregister another (which the controller would answer by evacuating it).
      # Give each node its own (targeted: no node sees another's) and the
      # servers all of them (they create them); a node without one uses the
      # shared `agent` token above. A Consul server holds the management token:
      # its root is Consul's admin, so keep servers to trusted machines.
      node_tokens:
        bay-a3: 0f3c2a1b-4d5e-4f60-8a7b-9c0d1e2f3a44
    # TLS for RPC between agents: verify incoming and outgoing, server names
    # checked (server.DATACENTER.consul). The servers' HTTP API then leaves
    # the network for HTTPS (https_port, the same certificate), so the
    # master's token never crosses it in clear: a server's certificate must
    # also name its node's address (an IP SAN), and the masters check it
    # against the CA in their `bay_consul_ca_file` (default /etc/bay/ca.pem).
    # Paths on the node; `bay up` makes a CA and a certificate for each node.
    # Empty: RPC in plain TCP (gossip is still encrypted with the key above)
    # and the servers' HTTP API in clear on their address.
    tls:
      ca_file: /etc/consul.d/tls/ca.pem
      cert_file: /etc/consul.d/tls/server.pem
      key_file: /etc/consul.d/tls/server-key.pem

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
    instance_port: 5001              # each instance on its registry node (with TLS: its HAProxy, ending the TLS)
    # hdfs://NAMENODE:HTTPPORT[,NAMENODE2:HTTPPORT]/PATH (WebHDFS; several NameNodes for HA),
    # or file:///PATH (a disk: only one instance unless it is shared)
    storage: hdfs://10.10.0.5:9870,10.10.0.6:9870/bay-registry
    gc_grace: 3600                   # seconds an unreferenced blob is kept (pushes in flight)
    gc_interval: 3600                # each instance collects garbage this often, online (0: never)
    cache_dir: /var/cache/bay-registry  # blobs served from each instance's disk once read from HDFS
    cache_size: 10Gi                 # ... up to this much (least recently served go first); 0: no cache
    blob_redirect: false             # without a cache: blob GETs go straight to a DataNode (clients must reach it)
    # Who may do what. token: Docker's token authentication (a 401 with a
    # Bearer challenge, a token endpoint at /token, short-lived tokens scoped
    # to repository:NAME:pull,push,delete); basic: HTTP basic credentials on
    # every request; none: anyone anything (only on a network nobody else
    # reaches). The nodes pull everything; each service's owners (people, or
    # the members of the teams in bay:teams) pull, push
    # and delete the repositories its images name; admins do everything.
    auth:
      mode: token
      secret: 5b0d1c0f7e6a4b1d9c3e2f8a7b6c5d4e3f2a1b0c  # signs tokens; the same on every registry node (a secret)
      token_ttl: 300                 # seconds a token lasts (clients ask again)
      anonymous_pull: false          # pulls without credentials: off unless you want it
      users:                         # name -> bcrypt hash (`htpasswd -nB NAME`); registry nodes only
        node: "$2b$10$QyKsvVgoi8Zh4C3RD4yqPeUlPvOtlDfMF0UKKVVPnmdmqQLvXG6s."
        alice: "$2b$10$QyKsvVgoi8Zh4C3RD4yqPeUlPvOtlDfMF0UKKVVPnmdmqQLvXG6s."
      node_user: node                # the account every node's Docker pulls with ...
      node_password: pull-only       # ... and its password (a secret; every node)
    # Each registry node's HAProxy serves HTTPS with this certificate on
    # instance_port (every other node's HAProxy passes the TLS through to it),
    # and every node's Docker trusts this CA for bay:docker:registry.
    # Empty: plain HTTP (and Docker told the registry is insecure).
    tls:
      cert_file: /etc/bay/registry/tls.pem
      key_file: /etc/bay/registry/tls-key.pem
      ca_file: /etc/bay/ca.pem

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

  # Alerts (docs/alerts.md). The bay_alerts engine on the master evaluates
  # the rules every `interval` seconds over Bay's own state and Graphite's
  # render API; an alert about a service goes to its `owners` (a team in
  # `teams` reaches its own contact if it has one, else its people), platform
  # and server alerts go to `platform_team`. Timing is Alertmanager's.
  alerts:
    enabled: true
    interval: 5.0
    group_wait: 5.0                  # a new group waits this long for more alerts to go with it
    group_interval: 60.0             # a group told again at most this often when it changed
    repeat_interval: 14400.0         # alerts that keep firing are told again this often
    send_attempts: 8                 # each delivery, with back-off; then it is failed (bay alerts)
    send_backoff_max: 300.0
    webhook_timeout: 10.0
    webhook_ca_file: ""              # CA of https webhooks (empty: the system's)
    platform_team: [platform]
    # name (an owner, a team, a person) -> e-mail addresses and webhook URLs
    # (webhooks get Alertmanager's JSON payload, version 4)
    contacts:
      platform:
        email: [platform@example.com]
        webhook: []
      bob:
        email: [bob@example.com]
      team-feed:
        email: [feed@example.com]
        webhook: [https://chat.example.com/hooks/feed]
    smtp:
      host: smtp.example.com
      port: 587
      sender: bay@example.com
      starttls: true
      user: bay
      password_file: /etc/bay/smtp-password    # on the master; never in pillar
    # change a default rule for everyone (threshold, for, severity, window,
    # min_divisor, labels, summary, action, disabled), or add the site's own:
    # {scope, source: state|graphite, metric, op, threshold, for, ...}
    rules:
      DiskFull: {threshold: 85}

  # Services: see pillar/services.sls (validated by bay_salt.model.services).
  services: {}

  # The platform team: these users (Salt eauth names, registry users) may
  # deploy every service and do everything in the registry. Everyone else may
  # run bay.deploy, bay.plan, bay.scale and bay.status only for the services
  # whose `owners` name them, directly or through a team below, and push only
  # the repositories those services' images name.
  admins: [alice]
  # team -> its people, for services whose owners name a team
  teams:
    team-feed: [bob, carol]

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

  # Metrics in Graphite (docs/metrics.md). Every node runs bay-metrics (cAdvisor,
  # the server, the node's components, HAProxy traffic, and the services' statsd)
  # and ships to carbon; nodes with role `monitoring` run Bay's Graphite.
  monitoring:
    enabled: true
    # whisper retentions, finest first (PRECISION:DURATION). The finest is the
    # agents' collection interval and statsd's flush interval: they must be equal
    # or points overwrite each other in the same whisper slot.
    retention: "10s:1d,1m:30d,10m:1y"
    # A site's own Graphite: its carbon pickle receiver (HOST:PORT) and its
    # graphite-web (URL). Empty: Bay's, on the first node with role monitoring
    # (with neither, no metrics agent runs: nowhere to send).
    carbon: ""
    web: ""
    # Bay's Graphite listens on loopback; the monitoring node's HAProxy serves
    # carbon here, with TLS and a client certificate the cluster's CA signed
    # (the nodes' agents and the master) ...
    carbon_port: 2014
    # carbon-caches on the monitoring node (one Python process each, sharing the
    # whisper files): the agents send each series to the one carbon's hash ring
    # gives it, on carbon_port + k; more than one when one cannot keep up (a
    # core each; docs/benchmarks.md "Graphite ingest")
    carbon_caches: 1
    # ... and graphite-web (render API, dashboards) here, with TLS and a password
    web_port: 8088
    # who may look: name -> SHA-512 crypt hash (`openssl passwd -6`); a secret,
    # give it to the monitoring nodes only
    web_users:
      bay: "$6$Q0dS5oNnK0q1$3dN0m8cW7a2bYbqQ8yq0mJqg8d3v6mQ0pTq1c3m2QpK9bVt0c7s8q9r6x5w4v3u2t1s0r9q8p7o6n5m4l3k2j1"
    secret_key: 6f1c2d3e4b5a69788796a5b4c3d2e1f0  # graphite-web's Django secret (monitoring nodes; a secret)
    buffer_points: 100000            # points an agent keeps while carbon is away (the oldest go first)
    statsd_port: 8125                # UDP on Docker's bridge gateway: containers get STATSD_HOST/STATSD_PORT
    # the node's certificate (cluster CA): the agent shows it to carbon; the
    # monitoring node serves carbon and graphite-web with it
    tls:
      cert_file: /etc/bay/tls/node.pem
      key_file: /etc/bay/tls/node-key.pem
      ca_file: /etc/bay/ca.pem
  # Logs (docs/logs.md). Every node keeps a removed container's output (its
  # last container_max_size, exit code, OOM kill, times) for `retention`, at
  # most node_max_size in all (the oldest go first), and serves containers'
  # output, live and kept, on `port` (HTTPS with the node's certificate,
  # bay:monitoring:tls; a bearer token the master signs: salt-run bay.logs).
  logs:
    enabled: true
    dir: /var/lib/bay/logs
    retention: 7d
    node_max_size: 1Gi
    container_max_size: 10Mi
    gc_interval: 60                  # seconds between two clean-ups
    port: 8095
    # services write log lines here (TCP, Docker's bridge gateway; containers
    # get BAY_LOG_HOST/BAY_LOG_PORT); the relay writes them into Kafka
    relay_port: 5140
    relay_buffer: 100000             # lines held while Kafka does not answer (then new ones are dropped)
    ship_output: true                # containers' stdout/stderr into Kafka too (label stream): kept past the node
    # the public half of the master's signing key (/etc/bay/logs-token.key on the master)
    token_public_key: |
      -----BEGIN PUBLIC KEY-----
      MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEexampleexampleexampleexampleexample
      exampleexampleexampleexampleexampleexampleexampleexampleexampl==
      -----END PUBLIC KEY-----
    token_ttl: 600                   # seconds a token from bay.logs is good for
    # the archive: every log topic into HDFS, an hour per directory
    # (/PATH/SERVICE/DATE/HOUR/part-PARTITION-FIRST-LAST.jsonl), by the
    # archiver on the nodes with role kafka
    archive:
      hdfs: hdfs://namenode.example.com:9870/bay/logs
      user: bay
      roll_seconds: 300              # a file is closed (and its offsets committed) this often ...
      roll_size: 64Mi                # ... or at this size
    # logs you can search (bay logs SERVICE --search): the indexer writes
    # every log topic into a search store with the Elasticsearch bulk API,
    # an index per service per day (bay-logs.SERVICE.YYYY-MM-DD), each
    # record once (its partition and offset are its id)
    search:
      enabled: true
      url: ""                        # a site's own Elasticsearch/OpenSearch; empty: Bay's OpenSearch
                                     # on each kafka node (loopback only, its own indexer)
      user: ""                       # the site's store's login, if any ...
      password: ""                   # ... (a secret: pillar targeted at the kafka nodes)
      ca_file: ""                    # the CA its HTTPS certificate is checked with
      retention: 7d                  # a day's index is deleted this long after the day
      heap: 256m                     # Bay's OpenSearch: JVM heap ...
      port: 9200                     # ... HTTP port on loopback ...
      lib_dir: /opt/bay/search/lib   # ... its jars (from Maven) ...
      data_dir: /var/lib/bay/search  # ... and its indices
  # Apache Kafka for services' logs: Bay's broker (KRaft) on the nodes with
  # role kafka, or a site's own (bootstrap, and no node with role kafka)
  kafka:
    bootstrap: ""                    # HOST:PORT[,HOST:PORT]: a site's own Kafka
    port: 9092                       # clients: SASL SCRAM-SHA-512 on the node's address (SASL_SSL with tls)
    controller_port: 9093            # KRaft's controller: loopback only
    user: bay
    password: change-me              # a secret: every node (its relay writes with it)
    lib_dir: /opt/bay/kafka/lib      # fetched with Maven when not there
    java_package: openjdk-17-jre-headless
    data_dir: /var/lib/bay/kafka
    heap: 256m
    partitions: 3                    # a service's topic, unless its spec's logs says otherwise
    retention: 7d
    # SASL_SSL: records and the password encrypted on the wire. ca_file: the
    # CA every client checks the broker against (its certificate must name
    # the kafka node's address); cert_file/key_file: the broker's (Bay's own
    # broker only; a site's own Kafka needs ca_file only). Paths on the
    # nodes; `bay up` gives the node certificate it makes for metrics.
    tls:
      ca_file: /etc/bay/ca.pem
      cert_file: /etc/bay/tls/node.pem
      key_file: /etc/bay/tls/node-key.pem
  sandbox:                           # what a service container may reach (README: "Service containers are sandboxed")
    enabled: true                    # false: containers reach what their node reaches (Docker's default)
    egress: []                       # every container may reach these too: [{to: 10.2.0.0/16, ports: [5432], protocol: tcp}]
    platform: []                     # the platform's addresses Bay does not know (a site's own HDFS, Kafka): never reachable
