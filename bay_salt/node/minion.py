"""The salt-minion settings of a Bay node (`bay up` and the bootstrap
playbook both write them into ``/etc/salt/minion.d/bay.conf``).

A minion cut off from the master keeps half-open connections to it; with
Salt's default TCP keepalive (first probe after 300 s idle) it notices only
five minutes later and receives no job meanwhile, so the controller cannot
see or heal the node for that long after its network is back. Probes after
10 s idle, 3 of them 5 s apart, make a dead connection known within about
25 s, and ZeroMQ reconnects on its own.

    python -m bay_salt.node.minion MINION_ID MASTER[,MASTER...]    # the YAML, for the playbook
"""

from __future__ import annotations

import sys

import yaml

#: TCP keepalive on the minion's connections to the master (and the master's to its minions)
KEEPALIVE = {"tcp_keepalive": True, "tcp_keepalive_idle": 10, "tcp_keepalive_cnt": 3, "tcp_keepalive_intvl": 5}


def config(minion_id: str, master: str | list[str]) -> dict:
    """A node's minion configuration: who it is, its master (or masters:
    hot/hot, connected to every one), the keepalive."""
    return {"id": minion_id, "master": master, **KEEPALIVE}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m bay_salt.node.minion MINION_ID MASTER[,MASTER...]")
    masters = [m.strip() for m in args[1].split(",") if m.strip()]
    if not masters:
        sys.exit("bay_salt.node.minion: no master given")
    sys.stdout.write(yaml.safe_dump(config(args[0], masters[0] if len(masters) == 1 else masters), sort_keys=False))


if __name__ == "__main__":
    main()
