"""What the scheduler and the control loop need from the nodes: their
capacity and containers, and starting and stopping containers there.
:class:`bay_salt.master.saltbackend.SaltBackend` does it through Salt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bay_salt.model.services import GroupSpec


class DeployError(RuntimeError):
    """A deploy, scale or replacement could not be carried out; the message
    names the group, the node and what to do. Nothing half-applied stays."""


@dataclass
class NodeState:
    id: str
    address: str
    cpus: float
    memory_mb: int
    containers: list[dict] = field(default_factory=list)
    schedulable: bool = True


class Backend(Protocol):
    def nodes(self) -> list[NodeState]:
        """Every node that answered, with its capacity and Bay containers."""

    def start(self, node: str, group: GroupSpec, instances: list[str]) -> list[dict]:
        """Start and health-wait ``instances`` of ``group`` on ``node``; one
        ``{instance, container, host_port, address, healthy}`` per instance."""

    def start_all(self, starts: list[tuple[str, GroupSpec, list[str]]]) -> list[list[dict] | DeployError]:
        """Several starts at once, the nodes working in parallel: for each
        ``(node, group, instances)`` what :meth:`start` returns, or the
        :class:`DeployError` that says why it could not start."""

    def stop(self, node: str, containers: list[str]) -> None:
        """Stop and remove the named containers on ``node``."""

    def stop_all(self, stops: dict[str, list[str]]) -> None:
        """Several nodes' stops at once (node -> containers), the nodes working in parallel."""

    def containers(self, node: str) -> list[dict]:
        """The Bay containers on ``node`` (:func:`bay_salt.node.containers.describe`)."""

    def containers_all(self, nodes: list[str]) -> dict[str, list[dict]]:
        """The Bay containers of each of ``nodes``, asked at once; a node that
        does not answer in a few seconds is left out."""

    def busy(self, node: str) -> bool:
        """True while a container start job runs on ``node``."""

    def output(self, node: str, container: str, lines: int) -> str:
        """The last ``lines`` of a container's output ("" if there is none to be had)."""


class RoundNodes:
    """A :class:`Backend` for one round of several deploys (an autoscaling
    round): the nodes are asked once, at the first :meth:`nodes`, and what this
    round starts and stops is kept in that view, so each deploy places against
    the capacity the earlier ones left. Everything else goes to ``backend``."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._view: list[NodeState] | None = None

    def __getattr__(self, name: str):
        return getattr(self.backend, name)

    def nodes(self) -> list[NodeState]:
        if self._view is None:
            self._view = self.backend.nodes()
        return [NodeState(s.id, s.address, s.cpus, s.memory_mb, list(s.containers), s.schedulable)
                for s in self._view]

    def _node(self, node: str) -> NodeState | None:
        return next((s for s in self._view or () if s.id == node), None)

    def start_all(self, starts: list[tuple[str, GroupSpec, list[str]]]) -> list[list[dict] | DeployError]:
        answers = self.backend.start_all(starts)
        for (node, group, _), got in zip(starts, answers, strict=True):
            state = self._node(node)
            if state is None or isinstance(got, DeployError):
                continue
            state.containers += [{"container": r["container"], "status": "running", "service": group.service,
                                  "group": group.group, "instance": r["instance"], "cpu": group.cpu,
                                  "memory_mb": group.memory_mb} for r in got if not r.get("error")]
        return answers

    def start(self, node: str, group: GroupSpec, instances: list[str]) -> list[dict]:
        got = self.start_all([(node, group, instances)])[0]
        if isinstance(got, DeployError):
            raise got
        return got

    def stop_all(self, stops: dict[str, list[str]]) -> None:
        self.backend.stop_all(stops)
        for node, containers in stops.items():
            state = self._node(node)
            if state is not None:
                gone = set(containers)
                state.containers = [c for c in state.containers if c["container"] not in gone]

    def stop(self, node: str, containers: list[str]) -> None:
        self.stop_all({node: containers})
