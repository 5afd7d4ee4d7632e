"""Manifests: stored as blobs by digest, revisions per repository, reached
by tag or digest; a manifest with a ``subject`` is recorded as a referrer."""

from __future__ import annotations

import hashlib
import json

from bay_salt.registry import layout
from bay_salt.registry.blobs import BlobStore
from bay_salt.registry.errors import Code, RegistryError, manifest_unknown
from bay_salt.registry.reference import (
    DIGEST_RE,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST,
    OCI_MANIFEST,
    check_digest,
    check_name,
    check_tag,
    is_digest,
)
from bay_salt.registry.referrers import ReferrerStore
from bay_salt.registry.tags import TagStore
from bay_salt.storage import Driver, NotFound


def references(doc: dict) -> list[dict]:
    """The descriptors a manifest or index references (config, layers, manifests)."""
    return [doc.get("config") or {}] + list(doc.get("layers") or []) + list(doc.get("manifests") or [])


class ManifestStore:
    def __init__(self, driver: Driver, blobs: BlobStore, tags: TagStore, referrers: ReferrerStore):
        self.d = driver
        self.blobs = blobs
        self.tags = tags
        self.referrers = referrers

    def _parse(self, body: bytes, content_type: str) -> tuple[dict, str]:
        """The manifest as JSON and its media type; MANIFEST_INVALID otherwise."""
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise RegistryError(400, Code.MANIFEST_INVALID, "manifest is not a JSON object")
        declared = content_type.split(";")[0].strip()
        media = doc.get("mediaType") or declared
        if media not in MANIFEST_TYPES:
            raise RegistryError(400, Code.MANIFEST_INVALID, "unsupported manifest media type", {"mediaType": media})
        if doc.get("mediaType") and declared not in ("", doc["mediaType"]):
            raise RegistryError(400, Code.MANIFEST_INVALID, "Content-Type does not match the manifest's mediaType",
                                {"content_type": content_type, "mediaType": doc["mediaType"]})
        return doc, media

    def _missing(self, name: str, doc: dict, media: str) -> list[str]:
        """What the manifest references that ``name`` does not hold."""
        if media in INDEX_TYPES:
            return [m.get("digest") for m in doc.get("manifests") or [] if not self.exists(name, m.get("digest", ""))]
        missing = []
        # foreign (non-distributable) layers live elsewhere: their urls say where
        for r in [doc.get("config") or {}] + [r for r in doc.get("layers") or [] if not r.get("urls")]:
            try:
                self.blobs.size(name, r.get("digest", ""))
            except RegistryError:
                missing.append(r.get("digest"))
        return missing

    def put(self, name: str, reference: str, body: bytes, content_type: str) -> tuple[str, str | None]:
        """Store a manifest under a tag or its digest. Returns (digest, subject
        digest or None). Everything it references must already be in ``name``."""
        check_name(name)
        if len(body) > MAX_MANIFEST:
            raise RegistryError(413, Code.SIZE_INVALID, f"manifest larger than {MAX_MANIFEST} bytes",
                                {"size": len(body)})
        alg = reference.split(":")[0] if DIGEST_RE.match(reference) else "sha256"
        digest = f"{alg}:{hashlib.new(alg, body).hexdigest()}"
        if is_digest(reference):
            check_digest(reference)
            if reference != digest:
                raise RegistryError(400, Code.DIGEST_INVALID, "manifest digest does not match its content",
                                    {"reference": reference, "actual": digest})
        else:
            check_tag(reference)
        doc, media = self._parse(body, content_type)
        missing = self._missing(name, doc, media)
        if missing:
            raise RegistryError(400, Code.MANIFEST_BLOB_UNKNOWN, "manifest references unknown content",
                                {"digests": missing[:20]})
        self.blobs.put_small(digest, body)
        self.d.put(layout.revision(name, digest), json.dumps({"mediaType": media}).encode())
        subject = (doc.get("subject") or {}).get("digest")
        if subject:
            check_digest(subject)
            desc = {"mediaType": media, "digest": digest, "size": len(body)}
            art = doc.get("artifactType") or ((doc.get("config") or {}).get("mediaType")
                                              if media == OCI_MANIFEST else None)
            if art:
                desc["artifactType"] = art
            if doc.get("annotations"):
                desc["annotations"] = doc["annotations"]
            self.referrers.put(name, subject, desc)
        if not is_digest(reference):
            self.tags.set(name, reference, digest)
        return digest, subject

    def exists(self, name: str, digest: str) -> bool:
        try:
            self.d.stat(layout.revision(name, digest))
            return True
        except (NotFound, RegistryError):
            return False

    def resolve(self, name: str, reference: str) -> str:
        """The digest a tag or digest reference names in ``name``; MANIFEST_UNKNOWN if none."""
        check_name(name)
        if is_digest(reference):
            check_digest(reference)
            if not self.exists(name, reference):
                raise manifest_unknown(reference)
            return reference
        return self.tags.get(name, reference)

    def get(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest)."""
        digest = self.resolve(name, reference)
        try:
            meta = json.loads(self.d.read(layout.revision(name, digest)))
            return self.blobs.read(digest), meta["mediaType"], digest
        except NotFound:
            raise manifest_unknown(reference) from None

    def delete(self, name: str, reference: str) -> None:
        """By tag: the tag goes. By digest: the manifest and every tag on it go."""
        digest = self.resolve(name, reference)
        if not is_digest(reference):
            self.tags.delete(name, reference)
            return
        self.tags.untag(name, digest)
        body = self.blobs.read(digest)
        self.d.delete(layout.revision(name, digest))
        subject = (json.loads(body).get("subject") or {}).get("digest")
        if subject:
            self.referrers.delete(name, subject, digest)
