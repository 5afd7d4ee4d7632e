"""Tags: names pointing at a manifest digest within a repository."""

from __future__ import annotations

from bay_salt.registry import layout
from bay_salt.registry.errors import manifest_unknown
from bay_salt.storage import Driver, NotFound


class TagStore:
    def __init__(self, driver: Driver):
        self.d = driver

    def get(self, name: str, tag: str) -> str:
        try:
            return self.d.read(layout.tag(name, tag)).decode()
        except NotFound:
            raise manifest_unknown(tag) from None

    def set(self, name: str, tag: str, digest: str) -> None:
        self.d.put(layout.tag(name, tag), digest.encode())

    def delete(self, name: str, tag: str) -> None:
        self.d.delete(layout.tag(name, tag))

    def list(self, name: str) -> list[str]:
        """Committed tags only (the driver never lists objects being written)."""
        try:
            return sorted(self.d.list(layout.tags(name)))
        except NotFound:
            return []

    def untag(self, name: str, digest: str) -> None:
        """Remove every tag of ``name`` that points at ``digest``."""
        for tag in self.list(name):
            try:
                if self.d.read(layout.tag(name, tag)).decode() == digest:
                    self.d.delete(layout.tag(name, tag))
            except NotFound:
                pass
