"""Reading Graphite back: the render API (JSON) and what ``bay top`` shows."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from bay_salt.model import names


class RenderError(OSError):
    """graphite-web did not answer as expected; the message says what and where."""


@dataclass
class RenderClient:
    url: str
    user: str = ""
    password: str = field(default="", repr=False)  # never in a repr (tracebacks, test reports)
    ca_file: str = ""
    timeout: float = 10.0

    def _open(self, path: str, params: dict | list | None = None):
        query = ("?" + urllib.parse.urlencode(params, doseq=True)) if params else ""
        req = urllib.request.Request(self.url.rstrip("/") + path + query)
        if self.user:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        ctx = ssl.create_default_context(cafile=self.ca_file or None) if self.url.startswith("https") else None
        try:
            return urllib.request.urlopen(req, timeout=self.timeout, context=ctx)
        except urllib.error.HTTPError as err:
            if err.code == 401:
                raise RenderError(f"graphite-web at {self.url} refused user {self.user or '(none)'!r}: wrong password?"
                                  ) from None
            raise RenderError(f"graphite-web at {self.url}: HTTP {err.code} for {path}") from None
        except (urllib.error.URLError, OSError) as err:
            raise RenderError(f"graphite-web at {self.url} does not answer: {getattr(err, 'reason', err)}") from None

    def series(self, targets: list[str] | str, since: str = "-5min", until: str = "now") -> dict[str, list]:
        """target name -> ``[[value, timestamp], ...]`` from the render API."""
        targets = [targets] if isinstance(targets, str) else targets
        params = [("format", "json"), ("from", since), ("until", until)] + [("target", t) for t in targets]
        with self._open("/render", params) as resp:
            try:
                data = json.load(resp)
            except ValueError as err:
                raise RenderError(f"graphite-web at {self.url}: not JSON ({err})") from None
        return {s["target"]: s["datapoints"] for s in data}

    def get(self, path: str) -> bytes:
        with self._open(path) as resp:
            return resp.read()


def last(points: list) -> float | None:
    """The newest non-null value of a series."""
    for value, _ts in reversed(points or []):
        if value is not None:
            return value
    return None


def top_targets(cluster: str) -> dict[str, str]:
    """column -> one render target giving a series per ``SERVICE.GROUP``."""
    c = names.metric_path(cluster, "containers")
    g = names.metric_path(cluster, "groups")
    t = names.metric_path(cluster, "traffic")
    return {
        "cpu": f"groupByNodes({c}.*.*.*.cpu_cores,'sum',3,4)",
        "memory": f"groupByNodes({c}.*.*.*.memory_bytes,'sum',3,4)",
        "desired": f"groupByNodes({g}.*.*.desired,'sum',3,4)",
        "passing": f"groupByNodes({g}.*.*.passing,'sum',3,4)",
        "requests": f"groupByNodes({t}.*.*.*.request_rate,'sum',3,4)",
        "errors": f"groupByNodes({t}.*.*.*.errors_5xx,'sum',3,4)",
    }


def top_rows(cluster: str, client: RenderClient, since: str = "-2min") -> list[dict]:
    """One row per group with its newest CPU (cores), memory (bytes), desired
    and passing instances, requests per second and 5xx per interval."""
    targets = top_targets(cluster)
    rows: dict[str, dict] = {}
    # one request per column: groupByNodes names every series SERVICE.GROUP, whatever it measures
    for col, target in targets.items():
        for name, points in client.series(target, since=since).items():
            rows.setdefault(name, {"group": name})[col] = last(points)
    return sorted(rows.values(), key=lambda r: r["group"])
