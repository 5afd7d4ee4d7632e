"""Online garbage collection: mark and sweep while pushes go on.

A blob is kept if a manifest of any repository references it, or any
repository linked or used it within ``grace`` (a push in flight uploads or
checks its blobs before it puts the manifest that references them; each
check refreshes the link), or it was committed within ``grace``. Uploads
untouched for a day are removed too. Registry instances run it every
``gc_interval`` (``bay:registry``); several instances collecting at once
only repeat each other's work.
"""

from __future__ import annotations

import json
import logging
import time

from bay_salt.registry import layout
from bay_salt.registry.manifests import references
from bay_salt.storage import Driver, NotFound

log = logging.getLogger("bay.registry.gc")

#: seconds an upload may stay untouched before it is abandoned
STALE_UPLOAD = 86400.0


def _ls(d: Driver, path: str) -> list[str]:
    try:
        return d.list(path)
    except NotFound:
        return []


def repositories(d: Driver, with_manifests: bool = True) -> list[str]:
    """Repository names: those with manifests (the catalog), or those with
    blob links but no manifests (``with_manifests`` False)."""
    out = []

    def walk(prefix: str) -> None:
        entries = _ls(d, prefix)
        if with_manifests and "_manifests" in entries:
            out.append(prefix[len(layout.REPOSITORIES) + 1:])
        if not with_manifests and "_layers" in entries and "_manifests" not in entries:
            out.append(prefix[len(layout.REPOSITORIES) + 1:])
        for e in entries:
            if not e.startswith("_"):
                walk(f"{prefix}/{e}")

    walk(layout.REPOSITORIES)
    return sorted(out)


def collect(d: Driver, grace: float, now: float | None = None) -> dict:
    """One mark and sweep; ``{"kept": count, "removed": [digests]}``."""
    now = time.time() if now is None else now
    live: set[str] = set()
    recent: set[str] = set()
    for repo in repositories(d) + repositories(d, with_manifests=False):
        revisions = layout.revisions(repo)
        for alg in _ls(d, revisions):
            for h in _ls(d, f"{revisions}/{alg}"):
                digest = f"{alg}:{h}"
                live.add(digest)
                try:
                    doc = json.loads(d.read(layout.blob(digest)))
                except (NotFound, ValueError):
                    continue
                live |= {r["digest"] for r in references(doc) if r.get("digest")}
        links = layout.layers(repo)
        for alg in _ls(d, links):
            for h in _ls(d, f"{links}/{alg}"):
                try:
                    if now - d.stat(f"{links}/{alg}/{h}").mtime < grace:
                        recent.add(f"{alg}:{h}")
                except NotFound:
                    pass
        for u in _ls(d, layout.uploads(repo)):
            try:
                if now - d.stat(f"{layout.uploads(repo)}/{u}/data").mtime > STALE_UPLOAD:
                    d.delete(f"{layout.uploads(repo)}/{u}")
            except NotFound:
                pass
    removed = []
    for alg in _ls(d, layout.BLOBS):
        for h in _ls(d, f"{layout.BLOBS}/{alg}"):
            digest = f"{alg}:{h}"
            if digest in live or digest in recent:
                continue
            try:
                if now - d.stat(layout.blob(digest)).mtime < grace:
                    continue  # just committed
                d.delete(layout.blob_dir(digest))
                removed.append(digest)
            except NotFound:
                pass
    if removed:
        log.info("gc removed %d blobs, kept %d", len(removed), len(live | recent))
    return {"kept": len(live | recent), "removed": removed}
