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
