# Example services pillar. Service developers declare their services here
# (reviewed like code) and deploy them themselves:
#   salt-run bay.deploy feed        (or: bay deploy feed)
#   salt-run bay.plan feed          what a deploy would do, changing nothing
#   salt-run bay.scale feed.read 12 scale one group now
#   salt-run bay.status [feed]      desired vs registered instances
# or from states: `bay_service.running` (see states/orch/deploy.sls).
# Specs are validated first; an error names service.group and field, and
# nothing changes anywhere.
bay:
  services:
    # service name: [a-z][a-z0-9-]*
    feed:
      # image for every group unless a group sets its own; from the cluster's
      # registry (bay:docker:registry); [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST],
      # lower-case names and no wildcards (its owners' registry grants come from it)
      image: 10.10.0.12:5000/feed:1.4.2
      # command: the whole argv (replaces the image's entrypoint); args: replace only its CMD
      # command: [/usr/bin/feed, --config, /etc/feed.yml]
      args: [--log-format, json]
      # environment for every group (a group's env adds to / overrides it);
      # Bay adds BAY_SERVICE, BAY_GROUP and BAY_INSTANCE
      env: {FEED_DB: "postgres://feed-db:5432/feed"}
      # environment whose values are secrets (a group's adds to / overrides it):
      # the values reach the container and nothing else (specs in KV, events,
      # bay.status/plan and Salt's job output carry the names only). Keep them
      # in an encrypted pillar (GPG renderer); a name cannot be in env too.
      secret_env: {FEED_DB_PASSWORD: "change-me"}
      # who operates this service (deploy, plan, scale, status; people or
      # teams from bay:teams) and is alerted when it breaks; the registry
      # lets them push its images' repositories
      owners: [team-feed, alice@example.com]
      # instances replaced at a time when the image or spec changes
      max_surge: 2
      # beyond Bay's hardened default (NET_RAW and MKNOD dropped, no-new-privileges,
      # at most 1024 processes): cap_add gives back only what Bay drops (a spec with
      # cap_add is deployed by the platform team only); read_only
      # makes the root filesystem read-only (tmpfs at /tmp and /run); a group's
      # security replaces this one as a whole
      security: {read_only: true, pids_limit: 256}
      # what its containers may reach beyond the sandbox (every container reaches
      # its node's frontends, log relay and statsd, and the instances registered
      # in KV; nothing else): IPv4 addresses or networks, their ports, tcp or udp;
      # nothing of the platform opens whatever is declared; a group's egress
      # replaces this one as a whole
      egress:
        - {to: 10.20.0.0/16, ports: [5432]}
        - {to: 10.20.1.53, ports: [53], protocol: udp}
      # readiness check: http (a path; 2xx/3xx is healthy) or tcp: true; used
      # when starting (a new instance must pass before it gets traffic or
      # replaces an old one), by HAProxy on every node, and by Bay's agent on
      # the instance's node (failing it marks the instance critical in KV:
      # out of every HAProxy, counted as missing by `bay services`)
      health:
        http: /healthz
        interval: 2s
        timeout: 1s
        rise: 2            # successes in a row to count as healthy
        fall: 3            # failures in a row to count as down
        start_period: 30s  # how long a new instance may take to become healthy
      # liveness check (optional; none: never replaced for hanging): run by
      # Bay's agent on the instance's node; failure_threshold failures in a row
      # replace the instance (a paused container is replaced at once anyway).
      # http: /path, tcp: true, or exec: [command, args] run in the container
      # (exit 0 is alive). Defaults as Kubernetes': 10s, 1s, 3, 0s.
      liveness:
        http: /healthz
        interval: 10s
        timeout: 1s
        failure_threshold: 3
        initial_delay: 0s
      # one group per interface: each its own instances, CPU, memory and
      # frontend, so one slow interface cannot take the others down
      groups:
        read:
          instances: 8
          cpu: 1             # CPUs (a hard limit, and what placement reserves)
          memory: 512Mi      # hard limit (Ki/Mi/Gi or k/m/g)
          port: 8000         # the port the process listens on in its container
          listen: 10080      # the HAProxy frontend on every node: clients use localhost:10080
          # the controller keeps the count between min and max from the
          # CPU the ready instances use (cAdvisor) against what they reserve
          autoscale:
            min: 4
            max: 32
            target_cpu: 0.6           # utilisation of the reserved CPU, 0-1
            tolerance: 0.1            # no change while within 10 % of target
            scale_down_window: 5m     # scale down to the highest need seen this long
            scale_down_step: 0.5      # at most this share removed per step
        write:
          instances: 2
          cpu: 2
          memory: 1Gi
          port: 8000
          listen: 10081
          env: {FEED_WRITE: "1"}
          health: {tcp: true}
