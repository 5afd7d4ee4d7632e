"""The registry over a storage driver, independent of HTTP: the stores of
the distribution model (:mod:`.blobs`, :mod:`.uploads`, :mod:`.manifests`,
:mod:`.tags`, :mod:`.referrers`) over one driver, the catalog and online GC
(:mod:`.gc`). Stateless: nothing lives in memory between requests, so any
instance can take any request of any upload. Blobs and manifests are
committed by rename after their digest was checked, so nothing partial is
ever visible."""

from __future__ import annotations

from bay_salt.registry import gc, layout
from bay_salt.registry.blobs import BlobStore
from bay_salt.registry.manifests import ManifestStore
from bay_salt.registry.reference import check_name
from bay_salt.registry.referrers import ReferrerStore
from bay_salt.registry.tags import TagStore
from bay_salt.registry.uploads import UploadStore
from bay_salt.storage import Driver, NotFound


class Registry:
    def __init__(self, driver: Driver, gc_grace: float = 3600.0):
        self.driver = driver
        self.gc_grace = gc_grace
        self.blobs = BlobStore(driver, gc_grace)
        self.uploads = UploadStore(driver, self.blobs)
        self.tags = TagStore(driver)
        self.referrers = ReferrerStore(driver)
        self.manifests = ManifestStore(driver, self.blobs, self.tags, self.referrers)

    def catalog(self) -> list[str]:
        """Every repository that holds a manifest."""
        return gc.repositories(self.driver)

    def repo_exists(self, name: str) -> bool:
        try:
            self.driver.list(layout.repository(check_name(name)))
            return True
        except NotFound:
            return False

    def gc(self, now: float | None = None) -> dict:
        """One online mark and sweep (see :mod:`bay_salt.registry.gc`)."""
        return gc.collect(self.driver, self.gc_grace, now)
