"""Chunked uploads on the file driver: a first chunk is hashed as it streams
in, and that sum is trusted at the finish only when it covers the whole
upload from its first byte. Two first PATCHes to one upload at the same time
(their bytes interleaved) must never store a blob whose digest is not its bytes."""

import hashlib

import pytest

from bay_salt.registry import layout
from bay_salt.registry.blobs import BlobStore
from bay_salt.registry.errors import RegistryError
from bay_salt.registry.uploads import UploadStore
from bay_salt.storage import LocalDriver, NotFound


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def store(tmp_path):
    d = LocalDriver(str(tmp_path))
    return d, UploadStore(d, BlobStore(d, gc_grace=3600))


def test_one_streamed_first_chunk_is_hashed_once_and_committed(tmp_path):
    d, up = store(tmp_path)
    uuid = up.start("bay/demo")
    assert up.append("bay/demo", uuid, 0, iter([b"a" * 10, b"b" * 10])) == 20
    blob = up.finish("bay/demo", uuid, sha(b"a" * 10 + b"b" * 10))
    assert blob.size == 20


def test_two_first_chunks_at_once_store_nothing_under_the_wrong_digest(tmp_path):
    d, up = store(tmp_path)
    uuid = up.start("bay/demo")

    def first():  # while this request streams, another's first chunk lands in the same upload
        yield b"A" * 10
        assert up.append("bay/demo", uuid, None, iter([b"B" * 10])) == 10
        yield b"A" * 10

    up.append("bay/demo", uuid, None, first())
    on_disk = b"".join(d.open(layout.upload("bay/demo", uuid)))
    assert sorted(on_disk) == sorted(b"A" * 20 + b"B" * 10)
    for claimed in (b"A" * 20, b"B" * 10):  # what either client hashed: refused, nothing stored
        uuid2 = _copy(d, up, uuid, on_disk)
        with pytest.raises(RegistryError, match="did not match"):
            up.finish("bay/demo", uuid2, sha(claimed))
        with pytest.raises(NotFound):
            d.stat(layout.blob(sha(claimed)))
    assert up.finish("bay/demo", uuid, sha(on_disk)).size == 30  # the bytes that are there, under their own digest


def _copy(d, up, uuid, data):
    """Another upload in the same state (bytes and kept sum) as ``uuid``."""
    other = up.start("bay/demo")
    d.put(layout.upload("bay/demo", other), data)
    try:
        d.put(layout.upload_sum("bay/demo", other), d.read(layout.upload_sum("bay/demo", uuid)))
    except NotFound:  # no sum kept: nothing to copy
        pass
    return other
