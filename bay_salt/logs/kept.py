"""A removed container's output, kept on its node.

Before Bay removes one of its containers (replaced, crash-looped, scaled
down, a stray), :func:`keep` copies the last ``container_max_bytes`` of its
output (stdout and stderr, each line with Docker's timestamp) and what is
known of its end (exit code, OOM kill, times) into
``DIR/SERVICE/GROUP/INSTANCE/``. :func:`collect` removes what is older than
the retention, then the oldest while the node keeps more than its cap, so
the disk never fills with logs. :func:`read` serves a kept output with
``tail`` and ``since`` like ``docker logs``.

Instance ids are unique (a replacement gets a new one), so one directory is
one container's output.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bay_salt.model import names

log = logging.getLogger("bay.logs")

OUTPUT, META = "output.log", "meta.json"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Kept:
    service: str
    group: str
    instance: str
    node: str
    container: str
    image: str
    exit_code: int | None
    oom_killed: bool
    started_at: str
    finished_at: str
    kept_at: float
    bytes: int
    #: only the last ``container_max_bytes`` were kept
    truncated: bool

    def to_dict(self) -> dict:
        return asdict(self)


def check_name(*parts: str) -> None:
    """Every path part is a Bay name (no ``..``, no ``/``): what a URL or a
    label says never leaves the log directory."""
    for p in parts:
        if not isinstance(p, str) or not _ID_RE.match(p):
            raise ValueError(f"{p!r} is not a service, group or instance name")


def where(root: str | Path, service: str, group: str, instance: str) -> Path:
    check_name(service, group, instance)
    return Path(root) / service / group / instance


def _tail_bytes(chunks: Iterable[bytes], limit: int) -> tuple[bytes, int]:
    """The last ``limit`` bytes of the stream, starting at a whole line, and the stream's whole size."""
    buf = bytearray()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        buf += chunk
        if len(buf) > 2 * limit:
            del buf[: len(buf) - limit]
    if len(buf) > limit:
        del buf[: len(buf) - limit]
        nl = buf.find(b"\n")
        if nl >= 0:
            del buf[: nl + 1]
    return bytes(buf), total


def keep(container, root: str | Path, node: str, max_bytes: int) -> Kept | None:
    """Keep a (stopped) Bay container's output and end; None for a container
    that is not Bay's. Written to a temporary directory and renamed, so a
    reader never sees half of it."""
    labels = container.labels or {}
    svc, grp, inst = (labels.get(k) for k in (names.LABEL_SERVICE, names.LABEL_GROUP, names.LABEL_INSTANCE))
    if not (svc and grp and inst):
        return None
    dest = where(root, svc, grp, inst)
    state = container.attrs.get("State") or {}
    data, total = _tail_bytes(container.logs(stdout=True, stderr=True, timestamps=True, stream=True), max_bytes)
    kept = Kept(svc, grp, inst, node, container.name, (container.attrs.get("Config") or {}).get("Image", ""),
                state.get("ExitCode"), bool(state.get("OOMKilled")), state.get("StartedAt", ""),
                state.get("FinishedAt", ""), time.time(), len(data), total > len(data))
    dest.parent.mkdir(parents=True, exist_ok=True)
    (Path(root) / ".tmp").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{inst}.", dir=Path(root) / ".tmp"))
    try:
        (tmp / OUTPUT).write_bytes(data)
        (tmp / META).write_text(json.dumps(kept.to_dict()))
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return kept


def entries(root: str | Path, service: str | None = None, group: str | None = None) -> list[Kept]:
    """What is kept (of one service, or one group), newest first."""
    base = Path(root)
    if service:
        check_name(service)
        base = base / service
        if group:
            check_name(group)
            base = base / group
    depth = 3 - (1 if service else 0) - (1 if group else 0)
    out = []
    for meta in base.glob("/".join(["*"] * depth + [META])):
        try:
            out.append(Kept(**json.loads(meta.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # being removed, or not ours
    return sorted(out, key=lambda k: k.kept_at, reverse=True)


def find(root: str | Path, service: str, group: str, instance: str) -> Kept | None:
    try:
        return Kept(**json.loads((where(root, service, group, instance) / META).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def parse_since(value: str | float | None, now: float | None = None) -> float | None:
    """``--since``: an RFC 3339 time, epoch seconds, or a duration back from now (``10m``, ``2h``)."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    m = re.match(r"^([0-9]+(?:\.[0-9]+)?)(s|m|h|d)$", text)
    if m:
        return (now if now is not None else time.time()) - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600,
                                                                                 "d": 86400}[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since: {value!r} is not a time (RFC 3339, epoch seconds) nor a duration (10m, 2h)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return dt.timestamp()


def line_time(line: bytes) -> float | None:
    """Docker's timestamp at the start of a line (RFC 3339 with nanoseconds)."""
    stamp = line.split(b" ", 1)[0].decode(errors="replace")
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    if not m:
        return None
    base = datetime.datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
    return base.timestamp() + (float("0" + m.group(2)) if m.group(2) else 0.0)


def select(lines: Iterable[bytes], tail: int | None = None, since: float | None = None,
           timestamps: bool = False) -> list[bytes]:
    """Lines (each with Docker's timestamp) from ``since`` on, the last ``tail`` of them."""
    out = []
    for line in lines:
        if since is not None:
            t = line_time(line)
            if t is not None and t < since:
                continue
        out.append(line)
    if tail is not None:
        out = out[-tail:] if tail > 0 else []
    return out if timestamps else [strip_time(ln) for ln in out]


def strip_time(line: bytes) -> bytes:
    head, sep, rest = line.partition(b" ")
    return rest if sep and line_time(line) is not None else line


def read(root: str | Path, service: str, group: str, instance: str, tail: int | None = None,
         since: float | None = None, timestamps: bool = False) -> Iterator[bytes] | None:
    """A kept output's lines (None: nothing kept for that instance)."""
    path = where(root, service, group, instance) / OUTPUT
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return iter(select(data.splitlines(keepends=True), tail, since, timestamps))


def usage(root: str | Path) -> int:
    return sum(k.bytes for k in entries(root))


def collect(root: str | Path, retention: float, max_bytes: int, now: float | None = None) -> list[str]:
    """Remove kept output older than ``retention`` seconds, then the oldest
    while the node keeps more than ``max_bytes``; returns what went
    (``SERVICE.GROUP/INSTANCE``, and why)."""
    now = time.time() if now is None else now
    removed = []
    kept = sorted(entries(root), key=lambda k: k.kept_at)
    total = sum(k.bytes for k in kept)
    for k in kept:
        why = None
        if now - k.kept_at > retention:
            why = f"older than {retention:g} s"
        elif total > max_bytes:
            why = f"the node keeps {total} bytes, more than {max_bytes}"
        if why is None:
            continue
        shutil.rmtree(where(root, k.service, k.group, k.instance), ignore_errors=True)
        total -= k.bytes
        removed.append(f"{k.service}.{k.group}/{k.instance} ({why})")
    for tmp in Path(root).glob(".tmp/*"):  # what a keep cut short (a crash, a full disk) left
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > 3600:
                shutil.rmtree(tmp)
                removed.append(f"{tmp.name} (a keep cut short)")
    for group_dir in Path(root).glob("*/*"):
        with contextlib.suppress(OSError):
            group_dir.rmdir()  # empty directories of groups and services go too
    for svc_dir in Path(root).glob("*"):
        with contextlib.suppress(OSError):
            svc_dir.rmdir()
    for line in removed:
        log.info("kept output removed: %s", line)
    return removed
