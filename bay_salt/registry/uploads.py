"""Blob uploads: monolithic, or chunked across requests (and instances:
the upload's state lives in storage). Nothing is visible under the blob's
digest until the whole upload matched it."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator

from bay_salt.registry import layout
from bay_salt.registry.blobs import Blob, BlobStore
from bay_salt.registry.errors import Code, RegistryError, digest_mismatch, upload_unknown
from bay_salt.registry.reference import check_digest, hasher
from bay_salt.storage import Driver, NotFound


def _hashed(chunks: Iterator[bytes], h, counted: list[int] | None = None) -> Iterator[bytes]:
    """The chunks, hashed into ``h`` as they pass (and their bytes added up in ``counted[0]``)."""
    for c in chunks:
        h.update(c)
        if counted is not None:
            counted[0] += len(c)
        yield c


class UploadStore:
    def __init__(self, driver: Driver, blobs: BlobStore):
        self.d = driver
        self.blobs = blobs

    def start(self, name: str) -> str:
        uuid = secrets.token_hex(16)
        self.d.put(layout.upload(name, uuid), b"")
        return uuid

    def size(self, name: str, uuid: str) -> int:
        try:
            return self.d.stat(layout.upload(name, uuid)).size
        except NotFound:
            raise upload_unknown(uuid) from None

    def append(self, name: str, uuid: str, start: int | None, chunks: Iterator[bytes]) -> int:
        """Append a chunk; ``start`` (from Content-Range) must be where the
        upload ends now, else 416. Returns the new size."""
        size = self.size(name, uuid)
        if start is not None and start != size:
            raise RegistryError(416, Code.BLOB_UPLOAD_INVALID, "chunk out of order",
                                {"expected_start": size, "got": start})
        if size:  # a later chunk: the digest is computed over the whole upload when it is finished
            return self.d.append_stream(layout.upload(name, uuid), chunks)
        # the first chunk (often the only one: docker, skopeo): hashed as it streams, so the
        # finish need not read the upload back; the sum is kept with the size it covers
        h, counted = hashlib.sha256(), [0]
        new = self.d.append_stream(layout.upload(name, uuid), _hashed(chunks, h, counted))
        if new == counted[0]:
            self.d.put(layout.upload_sum(name, uuid), f"{new} sha256:{h.hexdigest()}".encode())
        # else another request appended to the same upload at the same time: these bytes do not start
        # the upload (or are not contiguous), so no sum is kept and the finish hashes what is there
        return new

    def cancel(self, name: str, uuid: str) -> None:
        self.size(name, uuid)
        self.d.delete(layout.upload_dir(name, uuid))

    def finish(self, name: str, uuid: str, digest: str) -> Blob:
        """Check the whole upload against ``digest`` (read back in a stream unless
        it was hashed as it came) and commit it by rename; a mismatch stores nothing."""
        alg, hexpart = check_digest(digest)
        src = layout.upload(name, uuid)
        size = self.size(name, uuid)
        try:
            covered, _, summed = self.d.read(layout.upload_sum(name, uuid)).decode().partition(" ")
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
            self.d.delete(layout.upload_dir(name, uuid))
            raise digest_mismatch(digest, f"{alg}:{actual}")
        self.blobs.commit(src, digest)
        self.blobs.link(name, digest)
        self.d.delete(layout.upload_dir(name, uuid))
        return Blob(digest, size)

    def put(self, name: str, digest: str, chunks: Iterator[bytes], length: int | None = None) -> Blob:
        """Monolithic upload: hashed while it streams to a temporary object;
        committed only if digest (and length, if given) match."""
        alg, hexpart = check_digest(digest)
        uuid = self.start(name)
        src = layout.upload(name, uuid)
        h = hasher(alg)
        try:
            size = self.d.append_stream(src, _hashed(chunks, h))
            if length is not None and size != length:
                raise RegistryError(400, Code.SIZE_INVALID, "body length does not match Content-Length",
                                    {"expected": length, "got": size})
            if h.hexdigest() != hexpart:
                raise digest_mismatch(digest, f"{alg}:{h.hexdigest()}")
            self.blobs.commit(src, digest)
            self.blobs.link(name, digest)
            return Blob(digest, size)
        finally:
            try:
                self.d.delete(layout.upload_dir(name, uuid))
            except NotFound:
                pass
