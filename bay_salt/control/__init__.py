"""The master's control loop: it keeps what runs equal to what was deployed.

The recovery flow (told here once; the modules below each do one part of it):

1. Trust: only the minion the event speaks about (``recovery.trusted``).
2. A container died or hung: at once, one KV transaction marks the instance
   ``replacing`` (every node's bay-lb-sync takes it out of HAProxy through
   the Runtime API) and records the replacement's placement (a restarted
   controller resumes it).
3. After the crash-loop back-off (the first restart is immediate): the
   replacement starts on the same node, passes its health check, and one
   transaction registers it and deregisters the dead one; the dead container
   is removed. A replacement that fails its health check counts as a crash
   and is decided about again; after ``crash_loop_restarts`` in a row the
   group is marked failed instead.
4. Readiness the node agents report takes an instance out of (or back into)
   every HAProxy (``critical`` / ``passing``).
5. A node lost (Consul serfHealth): its instances are deregistered and each
   group is brought back to its count on the nodes left; a node back: its
   containers KV no longer lists are removed.
6. Reconciliation, every ``reconcile_interval`` and when a controller
   starts: what every live node runs against KV and the accepted specs; every
   difference healed. Events are the fast path; this is the safety net.

Every decision is a ``bay/...`` event and a log line.

* :mod:`.recovery` decides, purely, what heals each case: a list of actions;
* :mod:`.executor` applies actions through the KV store and Salt, and
  :mod:`.loop` runs decide-then-act for each event, holding what it works on;
* :mod:`.autoscale_policy` is the scaling policy (pure) and
  :mod:`.autoscale_round` its round (measure, decide, store, apply);
* :mod:`.operations` is the runner's deploy, plan, scale and status, and
  :mod:`.lifecycle` a group's pause, resume and removal;
* :mod:`.engine` is the runtime on the master (threads, the event bus,
  timers) that the Salt engine ``bay_controller`` starts.

The Salt side (node reports, start, stop) and node liveness are the master's
room: :mod:`bay_salt.master.saltbackend`, :mod:`bay_salt.master.nodes`.
"""
