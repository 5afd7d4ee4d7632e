"""Which carbon-cache a series belongs to: carbon's consistent-hash ring
(``carbon_ch``, what carbon-relay's ``consistent-hashing`` and graphite-web's
CarbonLink use), for the senders on every node.

The nodes do not install carbon (it brings Twisted with it; only the
monitoring node runs it), so the ring is computed here, to carbon's
definition: each cache key is placed at 100 points on a 16-bit circle, at the
first four hex digits of the MD5 of ``"<key>:<i>"`` (moved on by one while a
point is taken); a series goes to the first point at or after its own
position (the MD5 of its name), round the circle. A unit test checks it
against carbon's own ``ConsistentHashRing`` for thousands of names.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable
from hashlib import md5

#: points per cache on the circle (carbon's default)
REPLICAS = 100


def position(text: str) -> int:
    return int(md5(text.encode("utf-8")).hexdigest()[:4], 16)


class Ring:
    def __init__(self, keys: Iterable[Hashable], replicas: int = REPLICAS):
        entries: list[tuple[int, Hashable]] = []
        taken: set[int] = set()
        for key in keys:
            for i in range(replicas):
                p = position("%s:%d" % (key, i))  # noqa: UP031 - carbon's exact text, a tuple key's str() in it
                while p in taken:
                    p += 1
                taken.add(p)
                entries.append((p, key))
        if not entries:
            raise ValueError("a ring needs at least one key")
        entries.sort(key=lambda e: e[0])
        self._positions = [p for p, _ in entries]
        self._keys = [k for _, k in entries]

    def node(self, name: str) -> Hashable:
        """The key ``name`` belongs to."""
        i = bisect.bisect_left(self._positions, position(name)) % len(self._positions)
        return self._keys[i]
