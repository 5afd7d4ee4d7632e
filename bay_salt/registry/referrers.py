"""Referrers: for each subject manifest, the descriptors of the manifests
that name it as their ``subject`` (the referrers API)."""

from __future__ import annotations

import json

from bay_salt.registry import layout
from bay_salt.storage import Driver, NotFound


class ReferrerStore:
    def __init__(self, driver: Driver):
        self.d = driver

    def put(self, name: str, subject: str, descriptor: dict) -> None:
        self.d.put(layout.referrer(name, subject, descriptor["digest"]), json.dumps(descriptor).encode())

    def delete(self, name: str, subject: str, digest: str) -> None:
        try:
            self.d.delete(layout.referrer(name, subject, digest))
        except NotFound:
            pass

    def list(self, name: str, subject: str, artifact_type: str | None = None) -> list[dict]:
        prefix = layout.referrers(name, subject)
        try:
            entries = self.d.list(prefix)
        except NotFound:
            return []
        out = []
        for e in entries:
            try:
                desc = json.loads(self.d.read(f"{prefix}/{e}"))
            except NotFound:
                continue  # deleted since the listing
            if artifact_type is None or desc.get("artifactType") == artifact_type:
                out.append(desc)
        return out
