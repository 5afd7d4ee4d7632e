"""Where instances run and how a group gets to its declared state:
placement over node capacity (:mod:`.placement`), the pure plan of a group's
changes (:mod:`.planning`), and the deployer that carries a plan out through
a :class:`.backend.Backend` (Salt on the nodes) and the KV store
(:mod:`.deployer`)."""
