"""The ``bay`` command."""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from bay_salt import names

def _status_table(st: dict, console: Console) -> None:
    m = st["master"]
    console.print(f"[bold]Bay cluster {st['cluster']}[/]  master [cyan]{m['container']}[/] {m['address']} ({m['state']})")
    table = Table(show_lines=False)
    for col in ("node", "address", "roles", "state", "services", "HAProxy stats", "cAdvisor"):
        table.add_column(col)
    for n in st["nodes"]:
        services = " ".join(
            f"[green]{k}[/]" if v == "active" else f"[red]{k}:{v}[/]" for k, v in n["services"].items()
        )
        table.add_row(
            n["id"], n["address"], ",".join(n["roles"]), n["state"], services,
            n["haproxy_stats"], n["cadvisor"],
        )
    console.print(table)
    if st.get("frontends"):
        first = st["nodes"][0]["address"] if st["nodes"] else "NODE"
        console.print("HAProxy frontends on every node: " + ", ".join(st["frontends"])
                      + f"  (e.g. [cyan]curl http://{first}{st['frontends'][0].split(': ')[1]}/[/])")
    console.print(f"Salt: [cyan]{m['salt']}[/]")
    console.print(f"Shell on a node: [cyan]docker exec -it {names.node_container(st['cluster'], 1)} bash[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bay", description="Bay: a container platform on SaltStack")
    parser.add_argument("--cluster", default=names.DEFAULT_CLUSTER, help="local cluster name (default: %(default)s)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build and start a local Bay cluster (a salt-master and N nodes)")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default: %(default)s)")
    st = sub.add_parser("status", help="show the local cluster")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    up.add_argument("--no-demo", action="store_true", help="do not deploy the demo service")
    sub.add_parser("down", help="remove everything `bay up` made")
    dp = sub.add_parser("deploy", help="deploy a service from the cluster's pillar (salt-run bay.deploy)")
    dp.add_argument("service")
    sc = sub.add_parser("scale", help="scale one group now (salt-run bay.scale)")
    sc.add_argument("group", help="SERVICE.GROUP")
    sc.add_argument("count", type=int)
    sv = sub.add_parser("services", help="desired and registered instances (salt-run bay.status)")
    sv.add_argument("service", nargs="?")
    sub.add_parser("provision", help="re-run saltutil.sync_all and state.apply bay on every node")
    args = parser.parse_args(argv)

    from bay_salt.cluster.local import BayError, LocalCluster
    from bay_salt.cluster.progress import StepFailed

    console = Console()
    try:
        cluster = LocalCluster(args.cluster)
        if args.cmd == "up":
            started = time.monotonic()
            cluster.up(args.nodes, demo=not args.no_demo)
            _status_table(cluster.status(), console)
            console.print(f"[bold green]bay up[/] took {time.monotonic() - started:.0f}s")
        elif args.cmd == "status":
            status = cluster.status()
            if args.json:
                print(json.dumps(status, indent=2))
            else:
                _status_table(status, console)
        elif args.cmd == "down":
            for item in cluster.down():
                console.print(f"removed {item}")
        elif args.cmd == "provision":
            cluster.provision()
        elif args.cmd in ("deploy", "scale", "services"):
            fun, fargs = {
                "deploy": ("bay.deploy", [getattr(args, "service", "")]),
                "scale": ("bay.scale", [getattr(args, "group", ""), str(getattr(args, "count", 0))]),
                "services": ("bay.status", [a for a in [getattr(args, "service", None)] if a]),
            }[args.cmd]
            result = cluster.runner(fun, *fargs)
            if args.cmd == "services":
                table = Table()
                for col in ("group", "frontend", "desired", "registered", "instances"):
                    table.add_column(col)
                for grp, row in result.items():
                    registered = str(row["registered"])
                    if row.get("failed"):
                        registered += f" [red](failed: {row['failed']})[/]"
                    table.add_row(grp, f":{row['listen']}", str(row["desired"]), registered,
                                  "\n".join(row["instances"]))
                console.print(table)
            else:
                for grp, row in result.items():
                    console.print(row["summary"])
    except (BayError, StepFailed) as err:
        console.print(f"[bold red]bay {args.cmd}:[/] {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
