"""The registry's logic over a storage driver, independent of HTTP.

Layout (every path built here from validated names and digests)::

    blobs/ALG/HEX/data                                   content, by digest
    repositories/NAME/_layers/ALG/HEX                    the blob is in NAME (mtime: last use)
    repositories/NAME/_manifests/revisions/ALG/HEX       {"mediaType": ...} of a manifest in NAME
    repositories/NAME/_manifests/tags/TAG                digest the tag points at
    repositories/NAME/_referrers/ALG-HEX/ALG-HEX         descriptor of a manifest whose subject is the first
    repositories/NAME/_uploads/UUID/data                 an upload in progress (any instance may continue it)
    repositories/NAME/_uploads/UUID/sum                  "SIZE sha256:HEX" of its first chunk, hashed as it came

Stateless: nothing lives in memory between requests, so any instance can take
any request of any upload. Blobs and manifests are committed by rename, after
their digest was checked, so nothing partial is ever visible.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bay_salt.registry.storage import Driver, NotFound

# distribution-spec grammar
NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
UUID_RE = re.compile(r"^[a-f0-9]{32}$")
MAX_NAME = 255
MAX_MANIFEST = 4 << 20

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)


def blob_unknown(digest: str) -> "RegistryError":
    """The spec's 404 for a blob that is not (or no longer) in a repository."""
    return RegistryError(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})


class RegistryError(Exception):
    """An OCI error: ``status``, ``code`` (spec error code), message, detail."""

    def __init__(self, status: int, code: str, message: str, detail=None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def body(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return {"errors": [err]}


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise RegistryError(400, "NAME_INVALID", "invalid repository name", {"name": name[:300]})
    return name


def check_digest(digest: str) -> tuple[str, str]:
    if not DIGEST_RE.match(digest or ""):
        raise RegistryError(400, "DIGEST_INVALID", "invalid digest", {"digest": (digest or "")[:200]})
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise RegistryError(400, "MANIFEST_INVALID", "invalid tag", {"tag": tag[:200]})
    return tag


def hasher(alg: str):
    return hashlib.new(alg)


@dataclass
class Blob:
    digest: str
    size: int


class Registry:
    def __init__(self, driver: Driver, gc_grace: float = 3600.0):
        self.d = driver
        self.gc_grace = gc_grace

    # --- paths -----------------------------------------------------------------
    @staticmethod
    def _blob(digest: str) -> str:
        alg, h = check_digest(digest)
        return f"blobs/{alg}/{h}/data"

    @staticmethod
    def _layer(name: str, digest: str) -> str:
        alg, h = check_digest(digest)
        return f"repositories/{check_name(name)}/_layers/{alg}/{h}"

    @staticmethod
    def _revision(name: str, digest: str) -> str:
        alg, h = check_digest(digest)
        return f"repositories/{check_name(name)}/_manifests/revisions/{alg}/{h}"

    @staticmethod
    def _tag(name: str, tag: str) -> str:
        return f"repositories/{check_name(name)}/_manifests/tags/{check_tag(tag)}"

    @staticmethod
    def _upload(name: str, uuid: str) -> str:
        if not UUID_RE.match(uuid):
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown", {"uuid": uuid[:100]})
        return f"repositories/{check_name(name)}/_uploads/{uuid}/data"

    def _upload_sum(self, name: str, uuid: str) -> str:
        return self._upload(name, uuid)[: -len("data")] + "sum"

    @staticmethod
    def _referrer(name: str, subject: str, digest: str) -> str:
        return f"repositories/{check_name(name)}/_referrers/{subject.replace(':', '-')}/{digest.replace(':', '-')}"

    # --- blobs -------------------------------------------------------------------
    def blob_size(self, name: str, digest: str) -> int:
        """Size of a blob of repository ``name``; BLOB_UNKNOWN if not linked there."""
        try:
            self.d.stat(self._layer(name, digest))
            return self.d.stat(self._blob(digest)).size
        except NotFound:
            raise blob_unknown(digest) from None

    def touch(self, name: str, digest: str) -> None:
        """Refresh the repository's link to a blob (online GC keeps blobs with a recent link)."""
        path = self._layer(name, digest)
        try:
            if time.time() - self.d.stat(path).mtime < self.gc_grace / 4:
                return
        except NotFound:
            pass
        self.d.put(path, digest.encode())

    def blob_stream(self, digest: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The blob's bytes. The caller has checked it is linked in its
        repository (:meth:`blob_size`); deleted since: BLOB_UNKNOWN."""
        try:
            return self.d.open(self._blob(digest), offset, length)
        except NotFound:
            raise blob_unknown(digest) from None

    def blob_file(self, digest: str) -> str | None:
        """The blob's file on this machine (filesystem driver), or None. The
        caller has checked it is linked in its repository (:meth:`blob_size`)."""
        local = getattr(self.d, "local_path", None)
        return local(self._blob(digest)) if local else None

    def blob_location(self, digest: str, offset: int = 0, length: int | None = None) -> str | None:
        """A URL serving the blob's bytes straight from storage (HDFS: a
        DataNode), or None if the driver cannot. The caller has checked it is
        linked in its repository (:meth:`blob_size`)."""
        location = getattr(self.d, "location", None)
        try:
            return location(self._blob(digest), offset, length) if location else None
        except NotFound:
            raise blob_unknown(digest) from None

    def delete_blob(self, name: str, digest: str) -> None:
        self.blob_size(name, digest)
        self.d.delete(self._layer(name, digest))

    def mount(self, name: str, digest: str, source: str | None) -> bool:
        """Cross-repository mount: link ``digest`` of ``source`` into ``name``
        (``source`` None: any repository's); False if not there."""
        try:
            if source:
                self.blob_size(check_name(source), digest)
            else:
                self.d.stat(self._blob(digest))
        except (RegistryError, NotFound):
            return False
        self.d.put(self._layer(name, digest), digest.encode())
        return True

    # --- uploads -----------------------------------------------------------------
    def start_upload(self, name: str) -> str:
        uuid = secrets.token_hex(16)
        self.d.put(self._upload(name, uuid), b"")
        return uuid

    def upload_size(self, name: str, uuid: str) -> int:
        try:
            return self.d.stat(self._upload(name, uuid)).size
        except NotFound:
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown", {"uuid": uuid}) from None

    def append(self, name: str, uuid: str, start: int | None, chunks: Iterator[bytes]) -> int:
        """Append a chunk; ``start`` (from Content-Range) must be where the
        upload ends now, else 416. Returns the new size."""
        size = self.upload_size(name, uuid)
        if start is not None and start != size:
            raise RegistryError(416, "BLOB_UPLOAD_INVALID", "chunk out of order",
                                {"expected_start": size, "got": start})
        if size:  # a later chunk: the digest is computed over the whole upload when it is finished
            return self.d.append_stream(self._upload(name, uuid), chunks)
        # the first chunk (often the only one: docker, skopeo): hashed as it streams, so the
        # finish need not read the upload back; the sum is kept with the size it covers
        h = hashlib.sha256()

        def hashed():
            for c in chunks:
                h.update(c)
                yield c

        new = self.d.append_stream(self._upload(name, uuid), hashed())
        self.d.put(self._upload_sum(name, uuid), f"{new} sha256:{h.hexdigest()}".encode())
        return new

    def cancel_upload(self, name: str, uuid: str) -> None:
        self.upload_size(name, uuid)
        self.d.delete(f"repositories/{check_name(name)}/_uploads/{uuid}")

    def finish_upload(self, name: str, uuid: str, digest: str) -> Blob:
        """Check the whole upload against ``digest`` (read back in a stream) and
        commit it by rename; a mismatch stores nothing."""
        alg, hexpart = check_digest(digest)
        src = self._upload(name, uuid)
        size = self.upload_size(name, uuid)
        try:
            covered, _, summed = self.d.read(self._upload_sum(name, uuid)).decode().partition(" ")
        except NotFound:
            covered, summed = "", ""
        if covered == str(size) and summed.startswith(f"{alg}:"):
            actual = summed.partition(":")[2]  # hashed while it streamed in, over exactly these bytes
        else:
            h, size = hasher(alg), 0
            for c in self.d.open(src):
                h.update(c)
                size += len(c)
            actual = h.hexdigest()
        if actual != hexpart:
            self.d.delete(f"repositories/{check_name(name)}/_uploads/{uuid}")
            raise RegistryError(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                                {"digest": digest, "actual": f"{alg}:{actual}"})
        self._commit(src, digest)
        self.d.put(self._layer(name, digest), digest.encode())
        self.d.delete(f"repositories/{check_name(name)}/_uploads/{uuid}")
        return Blob(digest, size)

    def put_blob(self, name: str, digest: str, chunks: Iterator[bytes], length: int | None = None) -> Blob:
        """Monolithic upload: hashed while it streams to a temporary object;
        committed only if digest (and length, if given) match."""
        alg, hexpart = check_digest(digest)
        uuid = self.start_upload(name)
        src = self._upload(name, uuid)
        h = hasher(alg)

        def hashed():
            for c in chunks:
                h.update(c)
                yield c

        try:
            size = self.d.append_stream(src, hashed())
            if length is not None and size != length:
                raise RegistryError(400, "SIZE_INVALID", "body length does not match Content-Length",
                                    {"expected": length, "got": size})
            if h.hexdigest() != hexpart:
                raise RegistryError(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                                    {"digest": digest, "actual": f"{alg}:{h.hexdigest()}"})
            self._commit(src, digest)
            self.d.put(self._layer(name, digest), digest.encode())
            return Blob(digest, size)
        finally:
            try:
                self.d.delete(f"repositories/{check_name(name)}/_uploads/{uuid}")
            except NotFound:
                pass

    def _commit(self, src: str, digest: str) -> None:
        try:
            self.d.stat(self._blob(digest))  # content-addressed: already there is the same content
        except NotFound:
            self.d.move(src, self._blob(digest))

    # --- manifests ---------------------------------------------------------------
    def put_manifest(self, name: str, reference: str, body: bytes, content_type: str) -> tuple[str, str | None]:
        """Store a manifest under a tag or its digest. Returns (digest, subject
        digest or None). Everything it references must already be in ``name``."""
        check_name(name)
        if len(body) > MAX_MANIFEST:
            raise RegistryError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST} bytes",
                                {"size": len(body)})
        alg = reference.split(":")[0] if DIGEST_RE.match(reference) else "sha256"
        digest = f"{alg}:{hashlib.new(alg, body).hexdigest()}"
        if ":" in reference:
            check_digest(reference)
            if reference != digest:
                raise RegistryError(400, "DIGEST_INVALID", "manifest digest does not match its content",
                                    {"reference": reference, "actual": digest})
        else:
            check_tag(reference)
        try:
            doc = json.loads(body)
            assert isinstance(doc, dict)
        except (ValueError, AssertionError):
            raise RegistryError(400, "MANIFEST_INVALID", "manifest is not a JSON object") from None
        media = doc.get("mediaType") or content_type.split(";")[0].strip()
        if media not in MANIFEST_TYPES:
            raise RegistryError(400, "MANIFEST_INVALID", "unsupported manifest media type", {"mediaType": media})
        if doc.get("mediaType") and content_type and content_type.split(";")[0].strip() not in ("", doc["mediaType"]):
            raise RegistryError(400, "MANIFEST_INVALID", "Content-Type does not match the manifest's mediaType",
                                {"content_type": content_type, "mediaType": doc["mediaType"]})
        missing = []
        if media in (OCI_INDEX, DOCKER_LIST):
            for m in doc.get("manifests") or []:
                if not self._has_manifest(name, m.get("digest", "")):
                    missing.append(m.get("digest"))
        else:
            # foreign (non-distributable) layers live elsewhere: their urls say where
            refs = [doc.get("config") or {}] + [r for r in doc.get("layers") or [] if not r.get("urls")]
            for r in refs:
                try:
                    self.blob_size(name, r.get("digest", ""))
                except RegistryError:
                    missing.append(r.get("digest"))
        if missing:
            raise RegistryError(400, "MANIFEST_BLOB_UNKNOWN", "manifest references unknown content",
                                {"digests": missing[:20]})
        path = self._blob(digest)
        try:
            self.d.stat(path)
        except NotFound:
            self.d.put(path, body)
        self.d.put(self._revision(name, digest), json.dumps({"mediaType": media}).encode())
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
            self.d.put(self._referrer(name, subject, digest), json.dumps(desc).encode())
        if ":" not in reference:
            self.d.put(self._tag(name, reference), digest.encode())
        return digest, subject

    def _has_manifest(self, name: str, digest: str) -> bool:
        try:
            self.d.stat(self._revision(name, digest))
            return True
        except (NotFound, RegistryError):
            return False

    def resolve(self, name: str, reference: str) -> str:
        check_name(name)
        if ":" in reference:
            check_digest(reference)
            if not self._has_manifest(name, reference):
                raise RegistryError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"reference": reference})
            return reference
        try:
            return self.d.read(self._tag(name, reference)).decode()
        except NotFound:
            raise RegistryError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"reference": reference}) from None

    def get_manifest(self, name: str, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest)."""
        digest = self.resolve(name, reference)
        try:
            meta = json.loads(self.d.read(self._revision(name, digest)))
            return self.d.read(self._blob(digest)), meta["mediaType"], digest
        except NotFound:
            raise RegistryError(404, "MANIFEST_UNKNOWN", "manifest unknown", {"reference": reference}) from None

    def delete_manifest(self, name: str, reference: str) -> None:
        """By tag: the tag goes. By digest: the manifest and every tag on it go."""
        digest = self.resolve(name, reference)
        if ":" not in reference:
            self.d.delete(self._tag(name, reference))
            return
        for tag in self.tags(name):
            try:
                if self.d.read(self._tag(name, tag)).decode() == digest:
                    self.d.delete(self._tag(name, tag))
            except NotFound:
                pass
        body = self.d.read(self._blob(digest))
        self.d.delete(self._revision(name, digest))
        subject = (json.loads(body).get("subject") or {}).get("digest")
        if subject:
            try:
                self.d.delete(self._referrer(name, subject, digest))
            except NotFound:
                pass

    # --- listings ----------------------------------------------------------------
    def tags(self, name: str) -> list[str]:
        try:
            return sorted(self.d.list(f"repositories/{check_name(name)}/_manifests/tags"))
        except NotFound:
            return []

    def repo_exists(self, name: str) -> bool:
        try:
            self.d.list(f"repositories/{check_name(name)}")
            return True
        except NotFound:
            return False

    def catalog(self) -> list[str]:
        out = []

        def walk(prefix: str) -> None:
            try:
                entries = self.d.list(prefix)
            except NotFound:
                return
            if "_manifests" in entries:
                out.append(prefix[len("repositories/"):])
            for e in entries:
                if not e.startswith("_"):
                    walk(f"{prefix}/{e}")

        walk("repositories")
        return sorted(out)

    def referrers(self, name: str, digest: str, artifact_type: str | None = None) -> list[dict]:
        check_digest(digest)
        prefix = f"repositories/{check_name(name)}/_referrers/{digest.replace(':', '-')}"
        try:
            entries = self.d.list(prefix)
        except NotFound:
            return []
        out = []
        for e in entries:
            try:
                desc = json.loads(self.d.read(f"{prefix}/{e}"))
            except NotFound:
                continue
            if artifact_type is None or desc.get("artifactType") == artifact_type:
                out.append(desc)
        return out

    # --- garbage collection --------------------------------------------------------
    def gc(self, now: float | None = None) -> dict:
        """Online mark and sweep. A blob is kept if a manifest of any repository
        references it, or any repository linked or used it within ``gc_grace``
        (a push in flight uploads or checks its blobs before it puts the
        manifest that references them; each check refreshes the link). Uploads
        untouched for a day are removed too."""
        now = time.time() if now is None else now
        live: set[str] = set()
        recent: set[str] = set()
        for repo in self.catalog() + self._repos_without_manifests():
            base = f"repositories/{repo}"
            for alg in self._ls(f"{base}/_manifests/revisions"):
                for h in self._ls(f"{base}/_manifests/revisions/{alg}"):
                    digest = f"{alg}:{h}"
                    live.add(digest)
                    try:
                        doc = json.loads(self.d.read(self._blob(digest)))
                    except (NotFound, ValueError):
                        continue
                    for r in [doc.get("config") or {}] + list(doc.get("layers") or []) + \
                            list(doc.get("manifests") or []):
                        if r.get("digest"):
                            live.add(r["digest"])
            for alg in self._ls(f"{base}/_layers"):
                for h in self._ls(f"{base}/_layers/{alg}"):
                    try:
                        if now - self.d.stat(f"{base}/_layers/{alg}/{h}").mtime < self.gc_grace:
                            recent.add(f"{alg}:{h}")
                    except NotFound:
                        pass
            for u in self._ls(f"{base}/_uploads"):
                try:
                    if now - self.d.stat(f"{base}/_uploads/{u}/data").mtime > 86400:
                        self.d.delete(f"{base}/_uploads/{u}")
                except NotFound:
                    pass
        removed = []
        for alg in self._ls("blobs"):
            for h in self._ls(f"blobs/{alg}"):
                digest = f"{alg}:{h}"
                if digest in live or digest in recent:
                    continue
                try:
                    if now - self.d.stat(f"blobs/{alg}/{h}/data").mtime < self.gc_grace:
                        continue  # just committed
                    self.d.delete(f"blobs/{alg}/{h}")
                    removed.append(digest)
                except NotFound:
                    pass
        return {"kept": len(live | recent), "removed": removed}

    def _ls(self, path: str) -> list[str]:
        try:
            return self.d.list(path)
        except NotFound:
            return []

    def _repos_without_manifests(self) -> list[str]:
        out = []

        def walk(prefix: str) -> None:
            entries = self._ls(prefix)
            if "_layers" in entries and "_manifests" not in entries:
                out.append(prefix[len("repositories/"):])
            for e in entries:
                if not e.startswith("_"):
                    walk(f"{prefix}/{e}")

        walk("repositories")
        return out
