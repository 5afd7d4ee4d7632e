"""The master's side of Salt, shared by the controller, the alert evaluator
and the commands: the Salt backend (node operations and what nodes report),
the site as the master's own pillar says it, the leader locks among the
masters, node health from Consul, and the cached node reports the engines
read (:mod:`bay_salt.master.reports`)."""
