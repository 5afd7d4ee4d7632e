"""Sizes and durations as people write them in pillar (``512Mi``, ``1Gi``,
``500ms``, ``5m``), parsed once for services and settings alike."""

from __future__ import annotations

import re

_MEM_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(ki|mi|gi|k|m|g)?b?$", re.IGNORECASE)
_MEM_FACTOR = {None: 1 / (1024 * 1024), "k": 1 / 1024, "ki": 1 / 1024, "m": 1, "mi": 1, "g": 1024, "gi": 1024}
_DUR_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$")


def memory_mb(value: int | float | str) -> int:
    """``512Mi``, ``1Gi``, ``1.5G``, ``256m`` or a number of MiB -> MiB (at least 4, what Docker accepts)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        mb = float(value)
    else:
        m = _MEM_RE.match(str(value).strip())
        if not m:
            raise ValueError(f"{value!r} is not a memory size like 512Mi or 1Gi")
        mb = float(m.group(1)) * _MEM_FACTOR[m.group(2).lower() if m.group(2) else "m"]
    if mb < 4:
        raise ValueError(f"{value!r} is less than the 4 MiB Docker accepts")
    return int(mb)


def seconds(value: int | float | str) -> float:
    """``500ms``, ``2s``, ``5m``, ``1h``, ``7d`` or a number of seconds -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DUR_RE.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration like 500ms, 2s, 1m or 7d")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def size_bytes(size: str | int) -> int:
    """A disk size (``10Gi``, ``512Mi``; 0: none) in bytes."""
    return 0 if size in (0, "0") else memory_mb(size) << 20


_BYTES_RE = re.compile(r"^([0-9]+)\s*(ki|mi|gi|k|m|g)?b?$", re.IGNORECASE)


def data_bytes(value: int | str) -> int:
    """A size of data (``512Ki``, ``10Mi``, ``1Gi``, or a number of bytes) in bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _BYTES_RE.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a size like 512Ki, 10Mi or 1Gi")
    unit = (m.group(2) or "").lower().rstrip("i")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[unit]


#: one whisper archive: PRECISION:DURATION (10s:1d)
_RETENTION = re.compile(r"^\d+[smhdwy]?:\d+[smhdwy]?$")


def check_retentions(text: str) -> list[str]:
    """``"10s:1d,1m:7d"`` as a list, or ValueError naming the bad part."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("no retention given (e.g. 10s:1d,1m:7d)")
    for p in parts:
        if not _RETENTION.match(p):
            raise ValueError(f"{p!r} is not a whisper retention (PRECISION:DURATION, e.g. 10s:1d)")
    return parts


def finest_seconds(retentions: str) -> int:
    """The finest precision of a retention in seconds: statsd's flush interval
    and the agents' collection interval must equal it, or points overwrite each other."""
    first = check_retentions(retentions)[0].split(":")[0]
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return int(first[:-1]) * units[first[-1]] if first[-1] in units else int(first)
