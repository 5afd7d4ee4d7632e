"""Build the e2e tier's `bay up` cluster ahead of the e2e tests, so that
``scripts/test.sh`` can build it in the background while the tiers that need
no cluster (lint, unit, functional, integration) run.

    python -m tests.e2e.prebuild STATUS_FILE

It removes what an interrupted run of the same cluster left, brings the
cluster up exactly as the ``cluster`` fixture does (:func:`build`), and
writes ``STATUS_FILE`` (JSON: the cluster's name, ``ok``, the seconds it
took, or the error) when it is done, never before. The fixture uses a cluster
whose status says ``ok``, builds one itself otherwise, and removes it at the
end of the session either way."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bay_salt.cluster.local import LocalCluster
from bay_salt.cluster.progress import Progress

CLUSTER = os.environ.get("BAY_E2E_CLUSTER", "e2e")
NODES = 3
#: scripts/test.sh names the status file here for the e2e tier
STATUS_ENV = "BAY_E2E_PREBUILT"
#: the e2e cluster's own site pillar (bay:, over the defaults): a crash-loop back-off that resets after a
#: minute of running instead of five, so the many kills of the fault tests do not add up to long waits
#: between unrelated tests; a container nobody registered (a start cut short by a salt-master restart)
#: removed after 45 s instead of 120, inside the tests' convergence timeouts. The defaults, what
#: production needs, are covered by the unit tests of the decisions; tests that need other settings
#: merge theirs over these (:func:`site`)
#: the nodes' agents clear up only when asked, and then all that is dead or dangling: test_nodes'
#: hygiene test makes each leftover and asks (a round of their own between its looks would take them first)
E2E_SITE = {"controller": {"backoff_reset": 60.0, "stray_age": 45.0},
            "docker": {"hygiene": {"interval": 0, "dead_after": 0, "images_kept": 0, "volumes_kept": 0}}}


def build(cluster: LocalCluster) -> None:
    """A fresh e2e cluster: leftovers of an interrupted run removed, then `bay up` of NODES nodes with the demo."""
    cluster.down()
    cluster.up(NODES, site=E2E_SITE)


def site(cluster: LocalCluster, changes: dict | None = None) -> None:
    """The e2e site pillar with ``changes`` merged over it, given to every node (None: as built)."""
    from bay_salt.model.settings import deep_merge

    cluster.set_site(deep_merge(E2E_SITE, changes))


def prebuilt(cluster: LocalCluster, status_file: str | None) -> str | None:
    """Why the prebuilt cluster cannot be used (None: it can): no status file
    named, the build failed or did not finish, or its nodes are gone."""
    if not status_file:
        return "no prebuilt cluster named"
    try:
        status = json.loads(Path(status_file).read_text())
    except (OSError, ValueError) as err:
        return f"no finished build ({status_file}: {err})"
    if status.get("cluster") != cluster.name or not status.get("ok"):
        return f"the build failed: {status.get('error', status)}"
    if len([n for n in cluster.nodes() if n.status == "running"]) != NODES:
        return f"the built cluster {cluster.name!r} has not {NODES} running nodes"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.e2e.prebuild STATUS_FILE", file=sys.stderr)
        return 2
    status_file = Path(args[0])
    status_file.unlink(missing_ok=True)
    started = time.monotonic()
    status: dict = {"cluster": CLUSTER}
    try:
        build(LocalCluster(CLUSTER, progress=Progress()))
        status.update(ok=True)
    except Exception as err:  # noqa: BLE001 - recorded for the e2e tier, which then builds its own
        status.update(ok=False, error=f"{type(err).__name__}: {str(err)[-2000:]}")
    status["seconds"] = round(time.monotonic() - started, 1)
    tmp = status_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    tmp.replace(status_file)
    print(f"e2e cluster {CLUSTER}: {'built' if status['ok'] else 'FAILED'} in {status['seconds']:.0f} s"
          + ("" if status["ok"] else f": {status['error']}"), file=sys.stderr)
    return 0 if status["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
