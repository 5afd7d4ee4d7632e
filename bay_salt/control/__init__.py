"""The master's control loop: it keeps what runs equal to what was deployed.

* :mod:`.recovery` decides, purely, what heals a failure (a container died,
  a node lost or back, a restarted controller resuming): a list of actions;
* :mod:`.executor` applies actions through the KV store and Salt, and
  :mod:`.loop` runs decide-then-act for each event;
* :mod:`.autoscale_policy` is the scaling policy (pure) and :mod:`.autoscale_round` its
  round (measure, decide, store, apply);
* :mod:`.nodes` reads node liveness from Consul's serfHealth checks;
* :mod:`.saltbackend` is the Salt side (node reports, start, stop) and
  :mod:`.operations` the runner's deploy, plan, scale and status;
* :mod:`.engine` is the engine's runtime on the master (threads, the event
  bus, timers) that the Salt engine ``bay_controller`` starts.
"""
