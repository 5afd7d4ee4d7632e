"""bay_salt.registry.cache: one fill per blob, followed by every request
for it as it grows; a fill is kept (and its last byte sent) only if whole
and matching its digest; eviction goes by least recently served; names are
digests only. Fills run in real worker threads and write real files."""

import asyncio
import hashlib
import os
import threading

import pytest

from bay_salt.registry.cache import BlobCache, FillFailed
from bay_salt.registry.errors import RegistryError


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def run(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def pieces(data: bytes, n: int = 4):
    return lambda: (data[i:i + n] for i in range(0, len(data), n))


async def follow(cache: BlobCache, digest: str, size: int, chunks) -> bytes:
    """What a request sends: the file as it grows, up to what available() allows."""
    fill = cache.fill(digest, size, chunks, run)
    got, sent = b"", 0
    with fill.open() as f:
        while sent < size:
            limit = await fill.available(sent)
            got += os.pread(f.fileno(), limit - sent, sent)
            sent = limit
    await fill.task
    return got


def fill(cache: BlobCache, data: bytes, digest: str | None = None) -> bool:
    try:
        return asyncio.run(follow(cache, digest or sha(data), len(data), pieces(data))) == data
    except FillFailed:
        return False


def leftovers(root) -> list[str]:
    return [f for _, _, fs in os.walk(root) for f in fs if ".tmp-" in f]


def test_a_whole_matching_fill_is_served(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)
    assert fill(cache, b"layer bytes")
    path = cache.get(sha(b"layer bytes"), 11)
    with open(path, "rb") as fh:
        assert fh.read() == b"layer bytes"
    assert cache.get(sha(b"layer bytes"), 12) is None  # storage says another size: not this file
    assert cache.used == 11


def test_a_fill_with_the_wrong_bytes_or_cut_short_keeps_nothing_and_never_sends_the_last_byte(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)
    digest = sha(b"layer bytes")

    async def attempt(chunks) -> int:
        fill = cache.fill(digest, 11, chunks, run)
        sent = 0
        with pytest.raises(FillFailed):
            while True:
                sent = await fill.available(sent)
        await fill.task
        return sent

    assert asyncio.run(attempt(pieces(b"other bytes"))) == 10  # all but the last byte, then cut short
    assert asyncio.run(attempt(pieces(b"layer"))) == 5  # storage gave less than its size

    def broken():
        yield b"lay"
        raise OSError("DataNode went away")

    assert asyncio.run(attempt(broken)) == 3
    assert cache.get(digest, 11) is None and leftovers(tmp_path) == [] and cache.used == 0
    assert fill(cache, b"layer bytes")  # and a good fill after them is kept


def test_least_recently_served_blobs_are_evicted_past_the_limit(tmp_path):
    cache = BlobCache(str(tmp_path), 25)
    blobs = [bytes([i]) * 10 for i in range(3)]
    assert fill(cache, blobs[0]) and fill(cache, blobs[1])
    old = cache.get(sha(blobs[1]), 10)
    os.utime(old, (1, 1))  # blob 1 served long ago; blob 0 more recently
    assert fill(cache, blobs[2])
    assert cache.get(sha(blobs[1]), 10) is None
    assert cache.get(sha(blobs[0]), 10) and cache.get(sha(blobs[2]), 10) and cache.used == 20


def test_a_restart_counts_what_is_there_and_drops_fills_cut_short(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)
    assert fill(cache, b"kept")
    (tmp_path / "sha256" / ("c" * 64 + ".tmp-0123456789ab")).write_bytes(b"cut")  # the process died here
    again = BlobCache(str(tmp_path), 1 << 20)
    assert again.used == 4 and leftovers(tmp_path) == []


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:" + "a" * 63, "md5:abc", "../x"])
def test_only_digests_name_cache_files(tmp_path, digest):
    with pytest.raises(RegistryError):
        BlobCache(str(tmp_path), 1 << 20).path(digest)


def test_one_fill_per_blob_and_every_request_follows_it_as_it_grows(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)
    data = os.urandom(64 << 10)
    digest, opened, gate = sha(data), [], threading.Event()

    def chunks():
        opened.append(1)
        yield data[:1000]
        gate.wait(10)  # storage is slow with the rest
        yield data[1000:]

    async def main():
        first = cache.fill(digest, len(data), chunks, run)
        assert await first.available(0) == 1000  # sent before the fill is done
        assert cache.fill(digest, len(data), chunks, run) is first
        followers = [asyncio.ensure_future(follow(cache, digest, len(data), chunks)) for _ in range(5)]
        for _ in range(20):  # the followers run up to their wait for what storage has not sent (the gate holds it)
            await asyncio.sleep(0)
        assert not any(f.done() for f in followers)
        gate.set()
        return await asyncio.gather(*followers)

    assert asyncio.run(main()) == [data] * 5
    assert opened == [1] and cache.get(digest, len(data)) and leftovers(tmp_path) == []


def test_a_fill_whose_worker_never_runs_fails_its_senders_instead_of_hanging(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)

    async def refused(fn, *args):
        raise RuntimeError("cannot schedule new futures after shutdown")

    async def main():
        fill = cache.fill(sha(b"layer bytes"), 11, pieces(b"layer bytes"), refused)
        with pytest.raises(FillFailed):
            await asyncio.wait_for(fill.available(0), 5)
        assert leftovers(tmp_path) == []
        assert cache.fill(sha(b"layer bytes"), 11, pieces(b"layer bytes"), run) is not fill  # a new try

    asyncio.run(main())
