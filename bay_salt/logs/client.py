"""Reading nodes' log endpoints (what ``bay logs`` does with what
``bay.logs`` answered): one output, or every instance of a group followed
across replacements."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import requests

#: seconds between two looks for instances that replaced the ones followed
RELOCATE = 2.0


class FetchError(RuntimeError):
    pass


def fetch(url: str, token: str, ca: str | None, tail: int | None = None, since: str | None = None,
          follow: bool = False, timestamps: bool = False, timeout: float = 10.0) -> Iterator[bytes]:
    """The lines a node serves at ``url`` (streamed; with ``follow`` until the container ends)."""
    params = {"follow": "1" if follow else "0", "timestamps": "1" if timestamps else "0"}
    if tail is not None:
        params["tail"] = str(tail)
    if since:
        params["since"] = since
    try:
        resp = requests.get(url, params=params, headers={"Authorization": f"Bearer {token}"} if token else {},
                            stream=True,
                            verify=ca or True, timeout=(timeout, None if follow else 60))
    except requests.RequestException as err:
        raise FetchError(f"{url}: {type(err).__name__}: {str(err)[:200]}") from None
    if resp.status_code != 200:
        try:
            why = resp.json().get("error", resp.text)
        except ValueError:
            why = resp.text[:200]
        raise FetchError(f"{url}: {resp.status_code} {why}")
    pending = b""
    try:
        for chunk in resp.iter_content(chunk_size=None):  # as it arrives
            pending += chunk
            *whole, pending = pending.split(b"\n")
            for line in whole:
                yield line + b"\n"
        if pending:
            yield pending
    except requests.RequestException:
        return
    finally:
        resp.close()


class Follower:
    """Follows every live instance of a group: a stream per instance, and a
    look every ``RELOCATE`` seconds (``locate()``: what ``bay.logs`` answers)
    for the instances that replaced the ones that ended."""

    def __init__(self, locate: Callable[[], dict], write: Callable[[str, bytes], None], ca: str | None,
                 tail: int | None = None, since: str | None = None, timestamps: bool = False,
                 note: Callable[[str], None] = lambda text: None):
        self.locate, self.write, self.ca, self.note = locate, write, ca, note
        self.tail, self.since, self.timestamps = tail, since, timestamps
        self.streams: dict[str, threading.Thread] = {}
        self.seen: set[str] = set()
        self.stop = threading.Event()

    def _stream(self, entry: dict, token: str, first: bool) -> None:
        inst = entry["instance"]
        try:
            # instances that came after the start are read from their beginning
            for line in fetch(entry["url"], token, self.ca, self.tail if first else None,
                              self.since if first else None, True, self.timestamps):
                if self.stop.is_set():
                    return
                self.write(inst, line)
        except FetchError as err:
            self.note(f"{inst}: {err}")
        self.note(f"{inst} ({entry['node']}) ended")

    def step(self, first: bool = False) -> None:
        found = self.locate()
        for e in found["entries"]:
            if e["state"] != "live" or e["instance"] in self.seen:
                continue
            self.seen.add(e["instance"])
            if not first:
                self.note(f"following {e['instance']} on {e['node']}")
            t = threading.Thread(target=self._stream, args=(e, found["token"], first), daemon=True)
            self.streams[e["instance"]] = t
            t.start()

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        self.step(first=True)
        while not self.stop.is_set() and not until():
            time.sleep(RELOCATE)
            try:
                self.step()
            except Exception as err:  # noqa: BLE001 - the master is away for a moment: look again
                self.note(f"looking for new instances: {str(err)[:200]}")
