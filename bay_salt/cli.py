"""The ``bay`` command (typer): the local cluster (``up``, ``status``,
``down``, ``provision``) and the runner's service commands through its
master (``deploy``, ``scale``, ``services``). Errors are one line naming what
is wrong and what to do; never a traceback."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bay_salt.model import names

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Bay: a container platform on SaltStack")
console = Console()


class State:
    cluster: str = names.DEFAULT_CLUSTER
    cluster_given: bool = False
    user: str | None = None
    master_config: str = "/etc/salt/master"


#: ``--json`` of every command that reports
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output (JSON on stdout)")]

#: exit codes: 0 healthy, 1 an error (one line), 2 degraded (failed or short groups)
DEGRADED = 2


@app.callback()
def _options(cluster: Annotated[str | None, typer.Option(
                 help="a local cluster (bay up) by name; default: 'default', or, on a salt-master with no "
                      "local cluster, the master's own")] = None,
             as_user: Annotated[str | None, typer.Option(
                 "--as", help="run the service commands as this user (Salt external auth; password from "
                              "BAY_PASSWORD or asked)")] = None,
             master_config: Annotated[str, typer.Option(
                 help="the salt-master's configuration, on a master")] = "/etc/salt/master") -> None:
    State.cluster = cluster or names.DEFAULT_CLUSTER
    State.cluster_given = cluster is not None
    State.user = as_user
    State.master_config = master_config


def _login() -> tuple[str, str] | None:
    import os

    if not State.user:
        return None
    return State.user, os.environ.get("BAY_PASSWORD") or typer.prompt(f"password of {State.user}", hide_input=True)


def _on_master() -> bool:
    """Whether the service commands go through this machine's salt-master
    (Salt's client API) rather than a local cluster's (docker exec)."""
    from bay_salt.cluster.local import STATE_ROOT
    from bay_salt.master.client import on_a_master

    if State.cluster_given or (STATE_ROOT / State.cluster).exists():
        return False
    return on_a_master(State.master_config)


def _runner(fun: str, *args: str) -> dict:
    if _on_master():
        from bay_salt.master.client import MasterClient

        return MasterClient(State.master_config).runner(fun, *args, login=_login())
    return _local().runner(fun, *args, login=_login())


def _local():
    from bay_salt.cluster.local import LocalCluster

    return LocalCluster(State.cluster)


def _emit(data, as_json: bool, human) -> None:
    """``data`` as JSON, or ``human(data)`` for people."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human(data)


def _summaries(rows: dict) -> None:
    for row in rows.values():
        console.print(row["summary"])


def _status_table(st: dict) -> None:
    m = st["master"]
    console.print(f"[bold]Bay cluster {st['cluster']}[/]")
    for mm in st.get("masters") or [dict(m, leads=[])]:
        leads = f"  leads the {' and the '.join(mm['leads'])}" if mm.get("leads") else "  standing by"
        console.print(f"  master [cyan]{mm['container']}[/] {mm['address']} ({mm['state']}){leads}")
    for role, h in (st.get("leaders") or {}).items():
        if not h.get("master"):
            console.print(f"  [red]{role}: no master leads[/]" + (f" ({h['error']})" if h.get("error") else ""))
        elif h.get("beat_age", 0) > 10:
            console.print(f"  [yellow]{role}: {h['master']} last beat {h['beat_age']:.0f} s ago[/]")
    table = Table(show_lines=False)
    for col in ("node", "address", "roles", "state", "services", "HAProxy stats", "cAdvisor"):
        table.add_column(col)
    for n in st["nodes"]:
        services = " ".join(
            f"[green]{k}[/]" if v == "active" else f"[red]{k}:{v}[/]" for k, v in n["services"].items()
        )
        table.add_row(n["id"], n["address"], ",".join(n["roles"]), n["state"], services, n["haproxy_stats"],
                      n["cadvisor"])
    console.print(table)
    if st.get("frontends"):
        first = st["nodes"][0]["address"] if st["nodes"] else "NODE"
        console.print("HAProxy frontends on every node: " + ", ".join(st["frontends"])
                      + f"  (e.g. [cyan]curl http://{first}{st['frontends'][0].split(': ')[1]}/[/])")
    console.print(f"Salt: [cyan]{m['salt']}[/]")
    console.print(f"Shell on a node: [cyan]docker exec -it {names.node_container(st['cluster'], 1)} bash[/]")


@app.command()
def up(nodes: Annotated[int, typer.Option(help="number of nodes")] = 3,
       masters: Annotated[int, typer.Option(help="number of salt-masters (one leads the controller, the others "
                                                 "stand by)")] = 2,
       demo: Annotated[bool, typer.Option(help="deploy the demo service")] = True) -> None:
    """Build what is missing and start a local Bay cluster (salt-masters and N nodes)."""
    started = time.monotonic()
    cluster = _local()
    cluster.up(nodes, demo=demo, masters=masters)
    _status_table(cluster.status())
    console.print(f"[bold green]bay up[/] took {time.monotonic() - started:.0f}s")


@app.command()
def status(as_json: AsJson = False) -> None:
    """Show the local cluster: nodes, roles, their services, where to reach them. Exit 2 when a node
    or one of its services is not running (on a master: bay services)."""
    st = _local().status()
    _emit(st, as_json, _status_table)
    if any(n["state"] != "running" or any(v != "active" for v in n["services"].values()) for n in st["nodes"]):
        raise typer.Exit(DEGRADED)


@app.command()
def down() -> None:
    """Remove everything `bay up` made."""
    for item in _local().down():
        console.print(f"removed {item}")


@app.command()
def provision() -> None:
    """Run state.apply bay on every node again."""
    _local().provision()


@app.command()
def deploy(service: str, as_json: AsJson = False) -> None:
    """Deploy a service from pillar: every group to its spec (a new revision when a spec changed)."""
    _emit(_runner("bay.deploy", service), as_json, _summaries)


@app.command()
def plan(service: str, as_json: AsJson = False) -> None:
    """What `bay deploy SERVICE` would change, changing nothing."""
    def human(rows: dict) -> None:
        table = Table(title=f"bay deploy {service} would")
        for col in ("group", "desired", "start", "stop", "changes"):
            table.add_column(col)
        for grp, r in rows.items():
            what = "\n".join(r.get("changes") or []) or "[dim]nothing[/]"
            table.add_row(grp, str(r["desired"]), str(r["start"]), str(r["stop"]) + (" (roll)" if r["roll"] else ""),
                          what)
        console.print(table)

    _emit(_runner("bay.plan", service), as_json, human)


@app.command()
def scale(group: Annotated[str, typer.Argument(help="SERVICE.GROUP")], count: int, as_json: AsJson = False) -> None:
    """Set the count of a deployed group (its accepted spec; a pillar edit nobody deployed stays undeployed)."""
    _emit(_runner("bay.scale", group, str(count)), as_json, _summaries)


@app.command()
def rollback(service: str, to: Annotated[int | None, typer.Option(help="this revision (bay history); default: "
                                                                       "the one before the newest")] = None,
             as_json: AsJson = False) -> None:
    """Deploy an earlier revision again: its specs and images, at today's counts."""
    _emit(_runner("bay.rollback", service, *([f"to={to}"] if to is not None else [])), as_json, _summaries)


@app.command()
def history(service: str, as_json: AsJson = False) -> None:
    """The service's kept revisions: number, time (UTC), who, what, each group's image and count."""
    def human(got: dict) -> None:
        table = Table(title=f"{service}: revisions")
        for col in ("revision", "at (UTC)", "by", "action", "groups"):
            table.add_column(col)
        for r in got["revisions"]:
            action = r["action"] + (f" to {r['source']}" if r.get("source") else "") + (
                f" of {', '.join(r['removed'])}" if r.get("removed") else "")
            groups = "\n".join(f"{g}: {v['image']} x{v['instances']}" for g, v in r["groups"].items())
            table.add_row(str(r["revision"]), _when(r["at"]), r["by"], action, groups or "[dim]none[/]")
        console.print(table if got["revisions"] else f"[dim]{service}: no revisions kept (never deployed, or "
                                                      "deployed before Bay kept them)[/]")

    _emit(_runner("bay.history", service), as_json, human)


@app.command()
def remove(target: Annotated[str, typer.Argument(help="SERVICE or SERVICE.GROUP")],
           purge: Annotated[bool, typer.Option(help="a whole service: delete its log topic too")] = False,
           as_json: AsJson = False) -> None:
    """Take a service (or one group) away: deregistered, drained, stopped; its spec and routes gone."""
    _emit(_runner("bay.remove", target, *(["purge=True"] if purge else [])), as_json, _summaries)


@app.command()
def restart(group: Annotated[str, typer.Argument(help="SERVICE.GROUP")], as_json: AsJson = False) -> None:
    """Replace every instance of a group, rolling: each new one healthy before an old one goes."""
    _emit(_runner("bay.restart", group), as_json, _summaries)


@app.command()
def describe(target: Annotated[str, typer.Argument(help="SERVICE.GROUP or SERVICE.GROUP/INSTANCE")],
             as_json: AsJson = False) -> None:
    """A group (or instance): accepted spec, instances, revision, recent events, last exits.
    Exit 2 when it is failed or short of instances."""
    got = _runner("bay.describe", target)
    _emit(got, as_json, _describe_human)
    if got.get("failed") or got["passing"] < got["desired"]:
        raise typer.Exit(DEGRADED)


def _describe_human(d: dict) -> None:
    spec = d["spec"]
    console.print(f"[bold]{d['group']}[/]  revision {d['revision'] or '-'}, accepted {_when(d['accepted_at'])} UTC"
                  + (" (adopted)" if d["adopted"] else ""))
    counts = f"{d['passing']} passing of {d['desired']} desired" + (" (autoscaled)" if d["autoscaled"] else "")
    console.print(f"  instances: [{'green' if d['passing'] >= d['desired'] else 'yellow'}]{counts}[/]")
    if d.get("failed"):
        console.print(f"  [red]failed: {d['failed']}[/]")
    console.print(f"  image {spec['image']}, {spec['cpu']} CPU, {spec['memory_mb']} MiB, port {spec['port']}, "
                  f"frontend :{spec['listen']}, max_surge {spec['max_surge']}, owners {', '.join(spec['owners'])}")
    if spec.get("env") or spec.get("secret_env"):
        console.print(f"  env {', '.join(sorted(spec.get('env') or {}))}"
                      + (f"; secret env {', '.join(spec['secret_env'])}" if spec.get("secret_env") else ""))
    table = Table()
    for col in ("instance", "node", "port", "health", "image", "restarts"):
        table.add_column(col)
    for i in d["instances"]:
        table.add_row(i["instance"], i["node"], str(i["port"]), i["health"],
                      i["image"] + ("" if i["current"] else " [yellow](outdated)[/]"), str(i["restarts"]))
    console.print(table)
    for e in d["exits"]:
        console.print(f"  exited: {e['instance']} on {e['node']}, code {e['exit_code']}"
                      + (" (OOM killed)" if e["oom_killed"] else "") + f", {e['finished_at']}")
    for ev in d["events"][-10:]:
        console.print(f"  {_when(ev['at'])} {ev['tag']} {_event_text(ev['data'])}", highlight=False)
    for n in d.get("notes") or []:
        console.print(f"  [dim]{n}[/]")


def _event_text(data: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(data.items()) if k not in ("group",) and v not in (None, [], ""))


@app.command()
def events(service: Annotated[str | None, typer.Argument(help="only this service's")] = None,
           follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new ones")] = False,
           limit: Annotated[int, typer.Option(help="the newest N")] = 50,
           interval: Annotated[float, typer.Option(help="with --follow: seconds between looks")] = 2.0,
           as_json: AsJson = False) -> None:
    """The platform's journal: the controller's decisions and the operations, oldest first
    (owners: their services' only). --json: one JSON object per line."""
    after = None
    while True:
        args = [f"limit={limit}"] + ([f"service={service}"] if service else []) + (
            [f"after={after}"] if after else [])
        for ev in _runner("bay.events", *args)["events"]:
            after = ev["key"]
            if as_json:
                print(json.dumps(ev, sort_keys=True, default=str), flush=True)
            else:
                what = ev["data"].get("group") or ev["data"].get("service") or ev["data"].get("node") or ""
                console.print(f"{_when(ev['at'])} [cyan]{ev['tag']}[/] {what} {_event_text(ev['data'])}",
                              highlight=False)
        if not follow:
            return
        time.sleep(interval)


@app.command("user-add")
def user_add(name: str, admin: Annotated[bool, typer.Option(help="one of the platform team")] = False,
             registry: Annotated[bool, typer.Option(help="the same login for the registry (pushes the images of "
                                                         "the services whose owners name it)")] = True) -> None:
    """Add an account on the local cluster's masters: a service owner (deploys the
    services whose owners name it) or, with --admin, the platform team."""
    import os

    password = os.environ.get("BAY_PASSWORD") or typer.prompt(f"password for {name}", hide_input=True,
                                                                confirmation_prompt=True)
    _local().add_user(name, password, admin=admin, registry=registry)
    console.print(f"{name}: {'platform team' if admin else 'service owner'} on the masters"
                  + (" and in the registry" if registry else ""))


@app.command()
def grants() -> None:
    """The registry's grants from the services pillar as it is now (after declaring a service or
    changing its owners), read again by the running instances."""
    _local().refresh_registry_grants()


@app.command()
def drain(node: str, as_json: AsJson = False) -> None:
    """Move everything off a node before maintenance (salt-run bay.drain)."""
    _emit(_runner("bay.drain", node), as_json, _summaries)


@app.command()
def undrain(node: str, as_json: AsJson = False) -> None:
    """Give a node back once Consul counts it healthy again (salt-run bay.undrain)."""
    _emit(_runner("bay.undrain", node), as_json, _summaries)


node_app = typer.Typer(no_args_is_help=True, help="One node's upkeep")
app.add_typer(node_app, name="node")


@node_app.command("clean")
def node_clean(node: str,
               dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would go, remove nothing")] = False,
               dead_after: Annotated[str, typer.Option(help="Bay's containers not running this long go (30m, 0: "
                                                            "all); default bay:docker:hygiene:dead_after")] = "",
               as_json: AsJson = False) -> None:
    """Remove what Docker left behind on NODE: stale port-forwarding rules and conntrack entries,
    veths in no bridge, Bay's long-dead containers, dangling images and volumes beyond the caps
    (salt-run bay.node_clean). Its agent does this every bay:docker:hygiene:interval on its own."""
    args = [f"dry_run={dry_run}"] + ([f"dead_after={dead_after}"] if dead_after else [])
    _emit(_runner("bay.node_clean", node, *args), as_json, _hygiene_table)


def _hygiene_table(report: dict) -> None:
    rows = report["found"] if report["dry_run"] else report["removed"]
    verb = "would remove" if report["dry_run"] else "removed"
    if not rows and not report["errors"]:
        console.print(f"{report['node']}: nothing left behind")
        return
    table = Table(title=f"{report['node']}: {verb} {len(rows)}")
    for col in ("kind", "what", "why"):
        table.add_column(col, overflow="fold")
    for f in rows:
        table.add_row(f["kind"], f["name"], f["why"])
    for f in report["errors"]:
        table.add_row(f"[red]{f['kind']}[/]", f["name"], f"[red]not removed: {f['error']}[/]")
    console.print(table)
    if not report["dry_run"]:
        left = len(report["found"]) - len(rows) - len(report["errors"])
        if left:
            console.print(f"{left} found at the first look were gone or in use again at the second: left alone")


def degraded(rows: dict) -> bool:
    """A group failed, or fewer passing than desired."""
    return any(r.get("failed") or r["passing"] < r["desired"] for r in rows.values())


@app.command()
def services(service: Annotated[str | None, typer.Argument()] = None, as_json: AsJson = False) -> None:
    """Desired and registered instances (salt-run bay.status). Exit 2 when a group is failed or short."""
    result = _runner("bay.status", *([service] if service else []))
    _emit(result, as_json, _services_table)
    if degraded(result):
        raise typer.Exit(DEGRADED)


def _services_table(result: dict) -> None:
    table = Table()
    for col in ("group", "frontend", "desired", "passing / registered", "instances"):
        table.add_column(col)
    for grp, row in result.items():
        counts = f"{row['passing']} / {row['registered']}"
        if row["passing"] < row["desired"]:
            counts = f"[yellow]{counts}[/]"
        if row.get("failed"):
            counts += f" [red](failed: {row['failed']})[/]"
        if row.get("pillar"):
            counts += f"\n[dim]pillar: {row['pillar']}[/]"
        table.add_row(grp, f":{row['listen']}", str(row["desired"]), counts, "\n".join(row["instances"]))
    console.print(table)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


@app.command()
def alerts(as_json: AsJson = False) -> None:
    """Alerts that fire or wait (salt-run bay.alerts), silences, deliveries that gave up."""
    got = _runner("bay.alerts")
    if as_json:
        _emit(got, True, None)
        return
    table = Table(title="alerts")
    for col in ("alert", "state", "about", "since (UTC)", "summary"):
        table.add_column(col)
    colour = {"firing": "red", "pending": "yellow", "resolved": "green"}
    for a in got["alerts"]:
        about = " ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())
                         if k not in ("alertname", "scope", "severity"))
        table.add_row(a["alert"], f"[{colour.get(a['state'], 'white')}]{a['state']}[/]", about, _when(a["since"]),
                      a["summary"])
    console.print(table if got["alerts"] else "[green]no alerts[/]")
    if got["silences"]:
        _silence_table(got["silences"])
    for d in got["failed_deliveries"]:
        console.print(f"[red]not delivered[/] to {d['receiver']} ({d['channel']} {d['to']}) after {d['attempts']} "
                      f"attempts: {d['error']} - {d['subject']}")


def _silence_table(rows: list[dict]) -> None:
    table = Table(title="silences")
    for col in ("id", "matchers", "ends (UTC)", "by", "reason"):
        table.add_column(col)
    for s in rows:
        ends = _when(s["ends"]) + ("" if s["active"] else " [dim](ended)[/]")
        table.add_row(s["id"], " ".join(f"{k}={v}" for k, v in s["matchers"].items()), ends, s["by"], s["reason"])
    console.print(table)


site_app = typer.Typer(no_args_is_help=True, help="A real site's secrets, certificates, pillar and master config")
app.add_typer(site_app, name="site")


@site_app.command("init")
def site_init(directory: Annotated[Path, typer.Argument(help="a new (or empty) directory; kept root only")],
              name: Annotated[str, typer.Option(help="the cluster's name (metrics, dashboards, KV)")] = "default",
              master: Annotated[list[str], typer.Option(help="a salt-master as ID=ADDRESS (repeat: two for a "
                                                             "platform that survives one's loss)")] = None,
              node: Annotated[list[str], typer.Option(help="a server as ID=ADDRESS or ID=ADDRESS:ROLE,ROLE "
                                                           "(repeat; no roles anywhere: Bay chooses as bay up does)")
                              ] = None,
              venv: Annotated[str, typer.Option(help="the venv Salt and bay-salt run from on the masters")]
              = "/opt/bay/venv") -> None:
    """Make what `bay up` makes for its cluster, for real servers: CA and certificates, Consul tokens,
    registry secret and accounts, Kafka password, graphite-web user, logs signing key (as pillar files
    each targeted at the nodes that need it), each host's files and the masters' Salt configuration."""
    from bay_salt.cluster import sitefiles
    from bay_salt.cluster.local import BayError

    try:
        inv = sitefiles.Inventory.parse(name, master or [], node or [])
        written = sitefiles.init(directory, inv, venv=venv)
    except sitefiles.InventoryError as err:
        raise BayError(str(err)) from None
    except OSError as err:
        raise BayError(f"{err.filename or directory}: {err.strerror}") from None
    table = Table(title=f"site {inv.cluster} in {directory}")
    for col in ("host", "roles", "address", "files"):
        table.add_column(col)
    for h in inv.masters:
        table.add_row(h.id, "salt-master", h.address, str(len(written[h.id])))
    for h in inv.nodes:
        table.add_row(h.id, ",".join(h.roles), h.address, str(len(written[h.id])))
    console.print(table)
    console.print(
        f"pillar: {directory}/pillar (serve it as {sitefiles.SRV}/pillar on every master)\n"
        f"hosts:  {directory}/hosts/ID/ (copy each onto its server's /, e.g. rsync -a; or the bootstrap "
        f"playbook's bay_site={directory})\n"
        f"keep offline: {directory}/pki/ca-key.pem; the registry admin's and graphite-web's passwords are "
        f"in {directory}/secrets/\nnext: README, \"On real servers\"")


@site_app.command("add-node")
def site_add_node(directory: Annotated[Path, typer.Argument(help="the site's directory (bay site init's)")],
                  node: Annotated[str, typer.Option(help="the new server as ID=ADDRESS or ID=ADDRESS:ROLE,ROLE "
                                                         "(worker, kafka, mesos-agent)")]) -> None:
    """One more server for a site: its certificates (hosts/ID/), its entry in bay:nodes and its own
    Consul agent token. Then: `salt SERVER state.sls_id bay-consul-acl bay.consul` on a Consul server (it
    creates the token) and the bootstrap playbook with bay_site=DIR."""
    from bay_salt.cluster import sitefiles
    from bay_salt.cluster.local import BayError

    try:
        host = sitefiles.parse_host(node)
        written = sitefiles.add_node(directory, host)
    except sitefiles.InventoryError as err:
        raise BayError(str(err)) from None
    except OSError as err:
        raise BayError(f"{err.filename or directory}: {err.strerror}") from None
    console.print(f"{host.id} ({host.address}): {len(written)} files; next: salt SERVER state.sls_id bay-consul-acl "
                  f"bay.consul on a Consul server, then the bootstrap playbook with bay_site={directory}")


silence_app = typer.Typer(no_args_is_help=True, help="Silence alerts for a while, with a reason")
app.add_typer(silence_app, name="silence")


@silence_app.command("add")
def silence_add(matchers: Annotated[list[str], typer.Argument(help="LABEL=VALUE (* and ? allowed), e.g. "
                                                                   "service=demo group=web")],
                duration: Annotated[str, typer.Option("--for", help="how long: 30m, 2h")],
                reason: Annotated[str, typer.Option(help="why (shown with the silence)")]) -> None:
    """Hold back the alerts matching every LABEL=VALUE until it ends (salt-run bay.silence)."""
    # quoted: Salt reads key=value arguments as YAML ("reason=db: moving" would be a mapping)
    got = _runner("bay.silence", *matchers, f"duration={duration}", f"reason={json.dumps(reason)}")
    for sid, s in got.items():
        console.print(f"silence {sid}: {' '.join(f'{k}={v}' for k, v in s['matchers'].items())} until {s['ends']}")


@silence_app.command("list")
def silence_list(as_json: AsJson = False) -> None:
    """The silences, active and ended in the last day (salt-run bay.silences)."""
    rows = list(_runner("bay.silences").values())
    if as_json:
        _emit(rows, True, None)
        return
    _silence_table(rows) if rows else console.print("no silences")


@silence_app.command("expire")
def silence_expire(silence_id: str) -> None:
    """End a silence now (salt-run bay.unsilence)."""
    _runner("bay.unsilence", silence_id)
    console.print(f"silence {silence_id} ended")


def _print_records(records: list[dict]) -> None:
    for r in records:
        extra = {k: v for k, v in r.items() if k not in ("time", "level", "message", "service", "group", "instance",
                                                          "node", "partition", "offset", "@timestamp")}
        tail = f" [dim]{json.dumps(extra)}[/]" if extra else ""
        console.print(f"{r.get('time', '?')} [cyan]{r.get('group')}/{r.get('instance')}[/]@{r.get('node')} "
                      f"{str(r.get('level', '')).upper()} {r.get('message', '')}{tail}", markup=True, highlight=False)


@app.command()
def logs(target: Annotated[str, typer.Argument(help="SERVICE.GROUP or SERVICE.GROUP/INSTANCE (with --archive: "
                                                     "SERVICE)")],
         previous: Annotated[bool, typer.Option("--previous", "-p",
                                                help="the newest removed container (replaced, crashed)")] = False,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing, across replacements")] = False,
         tail: Annotated[int | None, typer.Option("--tail", "-n", help="the last N lines")] = None,
         since: Annotated[str | None, typer.Option(help="from this time on (10m, 2h, RFC 3339)")] = None,
         timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Docker's time of each line")] = False,
         archive: Annotated[bool, typer.Option(help="the service's log records archived in HDFS")] = False,
         grep: Annotated[str | None, typer.Option(help="with --archive: records holding this string "
                                                       "(fixed, as grep -F)")] = None,
         search: Annotated[str | None, typer.Option(help="SERVICE's log records in the search store matching "
                                                         "this (words, \"phrases\", -exclusions, field:value)")] = None,
         limit: Annotated[int, typer.Option(help="with --archive or --search: at most this many (the newest)")] = 1000,
         ca: Annotated[str | None, typer.Option(help="CA of the nodes' certificates (default: the local "
                                                     "cluster's, on a master /etc/bay/ca.pem)")] = None,
         as_json: AsJson = False) -> None:
    """A container's output, live or kept after it was removed (salt-run bay.logs, then each node's
    HTTPS endpoint); or with --archive, a service's log records from HDFS (salt-run bay.archived_logs)."""
    import threading

    from bay_salt.logs import client

    if archive or search is not None:
        args = [target, f"since={json.dumps(since or '1h')}", f"limit={limit}"]
        if grep and archive:
            args.append(f"grep={json.dumps(grep)}")
        if search:
            args.append(f"query={json.dumps(search)}")  # quoted: Salt reads key=value arguments as YAML
        got = _runner("bay.search_logs" if search is not None else "bay.archived_logs", *args)
        if as_json:
            _emit(got, True, None)
            return
        _print_records(got["records"])
        if not got["records"]:
            console.print(f"[dim]nothing {'found' if search is not None else 'archived'} for {target} since "
                          f"{_when(got['since'])} UTC[/]")
        return
    if not ca:
        from bay_salt.master.client import MASTER_CA

        ca = MASTER_CA if _on_master() else str(_local().state_dir / "pki" / "ca.pem")

    def locate() -> dict:
        return _runner("bay.logs", target, *(["previous=True"] if previous else []))

    found = locate()
    lock = threading.Lock()
    many = len(found["entries"]) > 1 or (follow and "/" not in target)
    out = sys.stdout.buffer

    def write(instance: str, line: bytes) -> None:
        with lock:
            out.write((f"[{instance}] ".encode() if many else b"") + line)
            out.flush()

    def note(text: str) -> None:
        with lock:
            console.print(f"[dim]-- {text}[/]", highlight=False)

    if follow and not previous:
        f = client.Follower(locate, write, ca, tail, since, timestamps, note)
        if "/" in target:  # one instance: until it ends
            f.step(first=True)
            for t in list(f.streams.values()):
                t.join()
            return
        f.run()
        return
    for e in found["entries"]:
        if e["state"] == "kept":
            note(f"{e['instance']} on {e['node']}: removed, exit {e['exit_code']}"
                 + (" (OOM killed)" if e.get("oom_killed") else "") + f", finished {e['finished_at']}")
        try:
            for line in client.fetch(e["url"], found["token"], ca, tail, since, False, timestamps):
                write(e["instance"], line)
        except client.FetchError as err:
            from bay_salt.cluster.local import BayError

            raise BayError(str(err)) from None


def _graphite(web: str | None, user: str | None, ca: str | None):
    """A render client for the local cluster's graphite-web, or the one named."""
    import os

    from bay_salt.metrics.render import RenderClient

    if web:
        return RenderClient(web, user or "", os.environ.get("BAY_GRAPHITE_PASSWORD", ""), ca or "")
    url, login, password, ca_file = _local().graphite()
    return RenderClient(url, user or login, password, ca or str(ca_file))


@app.command()
def dashboards(grafana: Annotated[str | None, typer.Option(
                   help="also write every dashboard as Grafana JSON into this directory")] = None) -> None:
    """The dashboards' URLs in graphite-web: the platform's and every service's."""
    from pathlib import Path

    from bay_salt.metrics import dashboards as dash

    if _on_master():
        if grafana:
            raise typer.BadParameter("--grafana: with a local cluster only (on a master: salt-run bay.dashboards)")
        table = Table()
        table.add_column("dashboard")
        table.add_column("URL")
        for name, url in _runner("bay.dashboards").items():
            table.add_row(name, url)
        console.print(table)
        return
    local = _local()
    web, user = local.graphite()[:2]
    services = (local.site.services_pillar().get("bay") or {}).get("services") or {}
    table = Table()
    table.add_column("dashboard")
    table.add_column("URL")
    for name, url in dash.urls(web, local.name, services).items():
        table.add_row(name, url)
    console.print(table)
    console.print(f"[dim]user {user}; password in {local.state_dir / 'pki' / 'graphite-web'}; "
                  f"CA {local.state_dir / 'pki' / 'ca.pem'}[/]")
    if grafana:
        out = Path(grafana)
        out.mkdir(parents=True, exist_ok=True)
        for name, panels in dash.all_dashboards(local.name, services).items():
            (out / f"{name}.json").write_text(json.dumps(dash.grafana(name, name, panels), indent=2) + "\n")
        console.print(f"Grafana JSON written to {out}/ (import each with a Graphite datasource)")


def _top_table(rows: list[dict], cluster: str) -> Table:
    def num(v, fmt):
        return "-" if v is None else fmt.format(v)

    table = Table(title=f"Bay {cluster}: groups (newest points in Graphite)")
    for col in ("group", "instances", "CPU cores", "memory", "requests/s", "5xx"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for r in rows:
        inst = f"{num(r.get('passing'), '{:.0f}')}/{num(r.get('desired'), '{:.0f}')}"
        if r.get("passing") is not None and r.get("desired") is not None and r["passing"] < r["desired"]:
            inst = f"[yellow]{inst}[/]"
        mem = None if r.get("memory") is None else r["memory"] / 2**20
        table.add_row(r["group"], inst, num(r.get("cpu"), "{:.2f}"), num(mem, "{:.0f} MiB"),
                      num(r.get("requests"), "{:.1f}"), num(r.get("errors"), "{:.0f}"))
    return table


@app.command()
def top(once: Annotated[bool, typer.Option(help="print one table and stop")] = False,
        interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 5.0,
        web: Annotated[str | None, typer.Option(help="graphite-web URL (default: the local cluster's); "
                                                     "password from BAY_GRAPHITE_PASSWORD")] = None,
        user: Annotated[str | None, typer.Option(help="graphite-web user")] = None,
        ca: Annotated[str | None, typer.Option(help="CA file graphite-web's certificate is checked with")] = None,
        ) -> None:
    """Groups with their live CPU, memory, instances and request rate (from Graphite)."""
    from rich.live import Live

    from bay_salt.cluster.local import BayError
    from bay_salt.metrics.render import RenderError, top_rows

    client = _graphite(web, user, ca)
    try:
        if once:
            console.print(_top_table(top_rows(State.cluster, client), State.cluster))
            return
        with Live(console=console, refresh_per_second=1) as live:
            while True:
                live.update(_top_table(top_rows(State.cluster, client), State.cluster))
                time.sleep(interval)
    except RenderError as err:
        raise BayError(str(err)) from None


def _command(args: list[str]) -> str:
    """The command's name in ``args`` (the global options' values skipped)."""
    it = iter(args)
    for a in it:
        if a in ("--cluster", "--as", "--master-config"):
            next(it, None)
        elif not a.startswith("-"):
            return a
    return "bay"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command; a user error is one red line and exit 1."""
    from bay_salt.cluster.local import BayError
    from bay_salt.cluster.progress import StepFailed
    from bay_salt.master.client import MasterError

    args = sys.argv[1:] if argv is None else argv
    command = _command(args)
    try:
        rc = app(args=args, prog_name="bay", standalone_mode=False)  # typer.Exit(N) comes back as N
    except (BayError, StepFailed, MasterError) as err:
        console.print(f"[bold red]bay {command}:[/] {err}")
        return 1
    except typer.Exit as done:
        return done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        console.print("[red]aborted[/]")
        return 130
    except Exception as err:
        # click's usage errors (typer carries its own copy of click): one message, no traceback
        if hasattr(err, "show") and isinstance(getattr(err, "exit_code", None), int):
            err.show()
            return err.exit_code
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
