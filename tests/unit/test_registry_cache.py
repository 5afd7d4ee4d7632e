"""bay_salt.registry.cache: a fill is kept only if whole and matching its
digest; eviction goes by least recently served; names are digests only."""

import asyncio
import hashlib
import os

import pytest

from bay_salt.registry.cache import BlobCache
from bay_salt.registry.core import RegistryError


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fill(cache: BlobCache, data: bytes, digest: str | None = None) -> bool:
    f = cache.writer(digest or sha(data))
    for i in range(0, len(data), 4):
        f.write(data[i:i + 4])
    return f.commit(len(data))


def leftovers(root) -> list[str]:
    return [f for _, _, fs in os.walk(root) for f in fs if ".tmp-" in f]


def test_a_whole_matching_fill_is_served(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)
    assert fill(cache, b"layer bytes")
    path = cache.get(sha(b"layer bytes"), 11)
    assert path and open(path, "rb").read() == b"layer bytes"
    assert cache.get(sha(b"layer bytes"), 12) is None  # storage says another size: not this file
    assert cache.used == 11


def test_a_fill_with_the_wrong_bytes_or_cut_short_keeps_nothing(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)
    assert not fill(cache, b"other bytes", digest=sha(b"layer bytes"))
    f = cache.writer(sha(b"layer bytes"))
    f.write(b"layer")
    assert not f.commit(11)  # a client that broke off
    f = cache.writer(sha(b"layer bytes"))
    f.write(b"layer")
    f.abort()
    assert cache.get(sha(b"layer bytes"), 11) is None and leftovers(tmp_path) == [] and cache.used == 0


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
    cache.writer(sha(b"cut short")).write(b"cut")  # the process died here
    again = BlobCache(str(tmp_path), 1 << 20)
    assert again.used == 4 and leftovers(tmp_path) == []


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:" + "a" * 63, "md5:abc", "../x"])
def test_only_digests_name_cache_files(tmp_path, digest):
    with pytest.raises(RegistryError):
        BlobCache(str(tmp_path), 1 << 20).path(digest)


def test_one_fill_at_a_time_per_blob_the_others_wait_for_it(tmp_path):
    cache = BlobCache(str(tmp_path), 1 << 20)
    order = []

    async def request(i):
        if await cache.claim("sha256:" + "b" * 64):
            order.append(f"fill {i}")
            await asyncio.sleep(0)
            cache.release("sha256:" + "b" * 64)
        else:
            order.append(f"waited {i}")

    async def main():
        await asyncio.gather(*(request(i) for i in range(3)))

    asyncio.run(main())
    assert order == ["fill 0", "waited 1", "waited 2"]
