"""What Bay's daemons on a node talk to on that host, below the rooms that
use them: Docker's view of the service containers (:mod:`.sources`: who has
a bridge address, a network's gateway) and HAProxy's Runtime API
(:mod:`.haproxy_runtime`). The node's agents, the metrics agent and the
log relay all stand on it; it knows nothing of them."""
