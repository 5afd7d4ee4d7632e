"""Bay's runtime state in Consul KV: the records (:mod:`.records`: instances,
routes, placements, with health as an enum) and the store that reads and
writes them in transactions of at most 64 operations (:mod:`.store`). Every
key is built by :mod:`bay_salt.model.names`."""
