"""The nodes through Salt: a :class:`bay_salt.scheduling.backend.Backend`
over Salt's LocalClient (the runner and the control loop build it here, in
one place: :func:`for_master`). What it reads of the site is
:class:`bay_salt.master.siteview.SiteView`'s; here are the operations on
nodes: start, stop, what they run, their clean-up, their log calls."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bay_salt.master.siteview import SiteView, controller_token
from bay_salt.metrics.platform import MASTER_TLS
from bay_salt.model.services import GroupSpec
from bay_salt.scheduling.backend import DeployError, NodeState
from bay_salt.util import retry


class SaltBackend(SiteView):
    def __init__(self, local, target: str | list[str] = "*", timeout: int = 300,
                 connected: Callable[[], set[str]] | None = None, connect_wait: float = 30.0, **view):
        """``target`` and ``view``: see :class:`SiteView`.
        ``timeout``: Salt's: after it, the master asks the node whether the
        job still runs (a long image pull does) and waits on while it does.
        ``connected``: the minions connected to the master now; a start on a
        node whose minion is not (restarting, cut off) waits up to
        ``connect_wait`` seconds for it, since a job published meanwhile
        never reaches it and would be waited for in vain."""
        super().__init__(local, target, **view)
        self.timeout = timeout
        self.connected = connected
        self.connect_wait = connect_wait

    def nodes(self) -> list[NodeState]:
        out = []
        for m, r in sorted(self.reports(refresh=True).items()):
            cap = r.get("capacity") or {}
            roles = r["node"].get("roles", [])
            out.append(NodeState(m, r["node"]["address"], float(cap.get("cpus", 0)), int(cap.get("memory_mb", 0)),
                                 r.get("containers", []), schedulable="worker" in roles))
        return out

    def start(self, node: str, group: GroupSpec, instances: list[str]) -> list[dict]:
        ret = self.start_all([(node, group, instances)])[0]
        if isinstance(ret, DeployError):
            raise ret
        return ret

    def start_all(self, starts: list[tuple[str, GroupSpec, list[str]]]) -> list[list[dict] | DeployError]:
        """One ``bay_docker.run`` job per start, all published before any
        return is waited for: each node starts its share while the others do."""
        was_listening = self.local.event.cpub
        try:
            jobs = [self._publish_start(node, group, ids) for node, group, ids in starts]
            return [job if isinstance(job, DeployError) else self._started(node, group, job)
                    for (node, group, _), job in zip(starts, jobs)]
        finally:
            if not was_listening:
                self.local.event.close_pub()

    def _publish_start(self, node: str, group: GroupSpec, instances: list[str]) -> dict | DeployError:
        try:
            self._wait_connected(node, group.name)
            pub = self.local.run_job(node, "bay_docker.run", [group.to_dict(), instances], timeout=self.timeout,
                                     listen=True)
        except DeployError as err:
            return err
        except Exception as err:  # noqa: BLE001 - Salt's client errors: the master could not publish
            return DeployError(f"{group.name} on {node}: the start could not be published: {err}")
        if not pub:
            return DeployError(f"{group.name} on {node}: no minion {node} to start it on")
        return pub

    def _started(self, node: str, group: GroupSpec, pub: dict) -> list[dict] | DeployError:
        ret = None
        for fn_ret in self.local.get_cli_event_returns(pub["jid"], pub["minions"], self.timeout, node):
            if fn_ret and node in fn_ret:
                ret = fn_ret[node].get("ret")
        if ret is None or ret is False:
            return DeployError(f"{group.name} on {node}: the node did not answer the start, nor run it, "
                               f"after {self.timeout} s")
        if not isinstance(ret, list):
            return DeployError(f"{group.name} on {node}: the start failed: {str(ret).strip().splitlines()[-1][:300]}")
        return ret

    def _wait_connected(self, node: str, what: str) -> None:
        if self.connected is None or node in self.connected():
            return
        try:
            retry.until(lambda: node in self.connected(), f"{node}'s minion connects", timeout=self.connect_wait,
                        interval=0.25)
        except retry.GaveUp:
            raise DeployError(f"{what} on {node}: its minion is not connected to the master "
                              f"(waited {self.connect_wait:g} s)") from None

    def stop(self, node: str, containers: list[str]) -> None:
        self.stop_all({node: containers})

    def stop_all(self, stops: dict[str, list[str]]) -> None:
        """One ``bay_docker.stop`` job per node, all published before any
        return is waited for (a node that does not answer is left to
        reconciliation: what is deregistered and still runs is a stray)."""
        was_listening = self.local.event.cpub
        try:
            jobs = []
            for node, containers in stops.items():
                try:
                    jobs.append((node, self.local.run_job(node, "bay_docker.stop", [list(containers)],
                                                          timeout=self.timeout, listen=True)))
                except Exception:  # noqa: BLE001 - not published: reconciliation removes it later
                    continue
            for node, pub in jobs:
                if pub:
                    for _ in self.local.get_cli_event_returns(pub["jid"], pub["minions"], self.timeout, node):
                        pass
        finally:
            if not was_listening:
                self.local.event.close_pub()

    def output(self, node: str, container: str, lines: int) -> str:
        ret = self.local.cmd(node, "bay_docker.output", [container, lines], timeout=15).get(node)
        return ret if isinstance(ret, str) else ""

    def busy(self, node: str) -> bool:
        """True while a ``bay_docker.run`` job runs on ``node`` (e.g. one a
        controller started before it was restarted)."""
        ret = self.local.cmd(node, "saltutil.running", timeout=30).get(node)
        return any(isinstance(j, dict) and j.get("fun") == "bay_docker.run" for j in ret or [])

    def containers(self, node: str) -> list[dict]:
        ret = self.local.cmd(node, "bay_docker.instances", timeout=60).get(node)
        if not isinstance(ret, list):
            raise DeployError(f"{node}: bay_docker.instances failed: {ret}")
        return ret

    def clean(self, node: str, dry_run: bool, dead_after: float | None = None, timeout: int = 15) -> dict:
        """``bay_docker.clean`` on ``node`` (:mod:`bay_salt.node.hygiene`): its report."""
        ret = self._answer(node, "bay_docker.clean", [], {"dry_run": dry_run, "dead_after": dead_after}, timeout)
        if ret is None:
            raise DeployError(f"{node}: did not answer within {timeout} s (is its minion up? bay status)")
        if not isinstance(ret, dict):
            raise DeployError(f"{node}: bay_docker.clean failed: {str(ret).strip().splitlines()[-1][:300]}")
        return ret

    def containers_all(self, nodes: list[str], timeout: int = 5) -> dict[str, list[dict]]:
        if not nodes:
            return {}
        ret = self.local.cmd(nodes, "bay_docker.instances", timeout=timeout, tgt_type="list")
        return {n: r for n, r in ret.items() if isinstance(r, list)}

    def usage_all(self, nodes: list[str], timeout: int = 5) -> tuple[dict[str, dict], dict[str, str]]:
        """Each node's container usage from its own cAdvisor (on loopback):
        ``({node: {container: usage}}, {node: why not})``."""
        ret = self.local.cmd(nodes, "bay.container_usage", timeout=timeout, tgt_type="list") if nodes else {}
        usage = {n: r for n, r in ret.items() if isinstance(r, dict)}
        errors = {n: (str(ret[n])[:200] if n in ret else "did not answer") for n in nodes if n not in usage}
        return usage, errors

    def provision_dashboards(self) -> dict[str, list[str] | str]:
        """The monitoring nodes write every dashboard again (a deploy may have
        declared a service or a group): ``{node: names or the error}``."""
        nodes = self.monitoring().get("nodes") or []
        if not nodes:
            return {}
        ret = self.local.cmd(nodes, "bay.provision_dashboards", tgt_type="list", timeout=self.report_timeout)
        return {n: ret.get(n, "no answer") for n in nodes}

    def kept_all(self, service: str, group: str | None = None, timeout: int = 15) -> dict[str, list[dict]]:
        """What each node keeps of removed containers of ``service`` (``group``)."""
        # a silent minion costs ``timeout`` and Salt's job check on it (its gather_job_timeout, 10 s by
        # default; 5 s here: a loaded but live minion still answers it, seen in CI)
        ret = self.local.cmd(self.target, "bay_logs.kept_output", [service, group], timeout=timeout,
                             tgt_type=self.tgt_type, gather_job_timeout=5)
        return {n: r for n, r in ret.items() if isinstance(r, list)}

    def _one_of(self, nodes: list[str], fun: str, args: list, what: str, timeout: int = 60, kwarg=None):
        """``fun`` (idempotent) on the first of ``nodes`` that answers (any node when none is named), each
        asked twice: a loaded minion may miss Salt's job check once and be taken for gone, the job
        done all the same (seen in CI). Its error, one line."""
        errors = []
        for node in nodes or sorted(self.reports()):
            ret = self._answer(node, fun, args, kwarg, timeout)
            if ret is None:
                ret = self._answer(node, fun, args, kwarg, timeout)
            if ret is None:
                errors.append(f"{node}: no answer")
                continue
            if isinstance(ret, str):  # these functions answer a dict or a list; a string is Salt's error
                raise DeployError(f"{what}: {ret.strip().splitlines()[-1].removeprefix('ERROR: ')[:400]}")
            return ret
        raise DeployError(f"{what}: {'; '.join(errors) or 'no node to ask'}")

    def _answer(self, node: str, fun: str, args: list, kwarg, timeout: int):
        """``fun``'s return on ``node``; None when it gave none (Salt's "did not return" text counts as none)."""
        ret = self.local.cmd(node, fun, args, kwarg=kwarg, timeout=timeout).get(node)
        if isinstance(ret, str) and ret.startswith("Minion did not return"):
            return None
        return ret

    def ensure_log_topic(self, nodes: list[str], service: str, partitions: int, retention: float) -> dict:
        return self._one_of(nodes, "bay_logs.ensure_topic", [service, partitions, retention],
                            f"{service}: its log topic")

    def search_logs(self, nodes: list[str], service: str, since: float, until: float | None, query: str | None,
                    limit: int) -> list[dict]:
        # seconds, not Salt's minute: a kafka node cut off is passed over for the next one
        return self._one_of(nodes, "bay_logs.search", [service, since], f"{service}: its logs in the search store",
                            timeout=8, kwarg={"until": until, "query": query, "limit": limit})

    def delete_log_topic(self, nodes: list[str], service: str) -> dict:
        return self._one_of(nodes, "bay_logs.delete_topic", [service], f"{service}: its log topic")

    def archived(self, nodes: list[str], service: str, since: float, until: float | None, grep: str | None,
                 limit: int) -> list[dict]:
        return self._one_of(nodes, "bay_logs.archived", [service, since],
                            f"{service}: its archived logs", timeout=120,
                            kwarg={"until": until, "grep": grep, "limit": limit})



def for_master(opts: dict, targets: list[str] | None = None, local=None, **kwargs) -> SaltBackend:
    """A backend for code running in the salt-master (runner, engine): aimed at
    ``targets``, else at the minions connected now, so no call waits out a dead
    node's timeout. ``local``: the calling thread's own LocalClient to reuse
    (:class:`ThreadClients`), else a new one (they are not shared between threads)."""
    import salt.client
    import salt.utils.minions

    from bay_salt.master import site

    if targets is None:
        targets = sorted(salt.utils.minions.CkMinions(opts).connected_ids())
    kwargs.setdefault("token", controller_token(opts))
    kwargs.setdefault("ca_file", opts.get("bay_consul_ca_file", MASTER_TLS["ca_file"]))
    # the site's settings from the master's own pillar (compiled as for a node the top file names),
    # so a command needs no node to answer and no node chooses them
    pillar_id = sorted(targets)[0] if targets else _first_accepted(opts)
    if pillar_id:
        kwargs.setdefault("site", lambda: site.master_view(opts, pillar_id))
    kwargs.setdefault("connected", lambda: salt.utils.minions.CkMinions(opts).connected_ids())
    return SaltBackend(local or salt.client.get_local_client(opts["conf_file"]), sorted(targets) or "*", **kwargs)


class ThreadClients:
    """One LocalClient per thread, kept: making one reads the master's config
    and costs 25-100 ms, which a controller handler would pay on every event."""

    def __init__(self, opts: dict):
        self.opts = opts
        self._mine = threading.local()

    def get(self):
        import salt.client

        local = getattr(self._mine, "client", None)
        if local is None:
            local = self._mine.client = salt.client.get_local_client(self.opts["conf_file"])
        return local


def _first_accepted(opts: dict) -> str | None:
    """The first minion whose key the master accepted (None: none yet)."""
    import salt.key

    with salt.key.get_key(opts) as keys:
        accepted = keys.list_status("accepted").get("minions") or []
    return sorted(accepted)[0] if accepted else None
