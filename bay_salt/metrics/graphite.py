"""Graphite as Bay runs it (``bay.monitoring``): carbon-cache writing whisper
files, graphite-web for the render API and dashboards, both on loopback.

Everything here renders configuration from the ``bay:monitoring`` settings,
so the Salt state, ``bay up`` and the tests start the same daemons with the
same files. PyPI's carbon/whisper/graphite-web 1.1.10 (installed with
``GRAPHITE_NO_PREFIX=True`` into a venv of their own) are used: Debian's
graphite-web 1.1.8 has a broken dashboard page (../shared/ENVIRONMENT.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from bay_salt.metrics import carbon
from bay_salt.model.units import check_retentions, finest_seconds  # noqa: F401 - graphite's own words

#: carbon's receivers and cache query port, on loopback of the monitoring node
LINE_PORT, PICKLE_PORT, CACHE_QUERY_PORT = 2003, 2004, 7002
#: graphite-web (gunicorn) on loopback; HAProxy serves it to people with a password
WEB_PORT = 8180
#: the Python module graphite-web imports as its local settings
SETTINGS_MODULE = "bay_graphite_settings"


#: how each kind of metric is rolled up into coarser archives (by the last path element):
#: counts per interval add up, maxima stay maxima, everything else is averaged
AGGREGATION = (
    ("counts", r"\.(count|requests|errors_5xx|connection_errors|retries|redispatches|restarts|replacements"
               r"|actions|bytes_in|bytes_out|pulls|pushes)$", "sum"),
    ("maxima", r"\.(max|upper|upper_\d+)$", "max"),
    ("minima", r"\.(min|lower)$", "min"),
    ("default", r".*", "average"),
)


#: the carbon-cache instances' names, in carbon's own words (``--instance``)
INSTANCES = "abcdefgh"
#: how far apart each further instance's ports are from the first one's
INSTANCE_PORT_STEP = 100


@dataclass(frozen=True)
class Cache:
    """One carbon-cache instance on the monitoring node's loopback."""

    instance: str
    line_port: int
    pickle_port: int
    query_port: int

    @property
    def ring_key(self) -> tuple[str, str]:
        """Its key on carbon's consistent-hash ring: what graphite-web's
        CARBONLINK_HOSTS makes of ``127.0.0.1:PORT:INSTANCE``, so a series'
        unflushed points are asked of the cache its points were sent to."""
        return ("127.0.0.1", self.instance)


def caches(count: int = 1) -> list[Cache]:
    """The first ``count`` carbon-caches: ``a`` on carbon's usual ports, each
    further one :data:`INSTANCE_PORT_STEP` above the one before."""
    if not 1 <= count <= len(INSTANCES):
        raise ValueError(f"carbon caches: {count} (expected 1 to {len(INSTANCES)})")
    step = INSTANCE_PORT_STEP
    return [Cache(i, LINE_PORT + k * step, PICKLE_PORT + k * step, CACHE_QUERY_PORT + k * step)
            for k, i in enumerate(INSTANCES[:count])]


def cache_targets(first: carbon.Target, count: int = 1) -> dict[tuple[str, str], carbon.Target]:
    """Where a sender reaches each of the monitoring node's ``count``
    carbon-caches, by its key on carbon's ring: HAProxy serves the k-th on
    the first one's port + k (with the same TLS)."""
    return {c.ring_key: replace(first, port=first.port + k) for k, c in enumerate(caches(count))}


def carbon_conf(storage_dir: str, conf_dir: str, max_creates_per_minute: int = 6000,
                max_updates_per_second: int = 10000, count: int = 1) -> str:
    """carbon.conf: every receiver on loopback (HAProxy takes the nodes' TLS
    connections), no UDP, creates limited so a burst of new series cannot starve updates.
    With ``count`` > 1 a ``[cache:X]`` section gives each further instance its
    ports (they share the whisper directory: a series lives in one cache only,
    the one carbon's ring gives it, so no file has two writers)."""
    further = "".join(f"""
[cache:{c.instance}]
LINE_RECEIVER_PORT = {c.line_port}
PICKLE_RECEIVER_PORT = {c.pickle_port}
CACHE_QUERY_PORT = {c.query_port}
""" for c in caches(count)[1:])
    return _carbon_cache_section(storage_dir, conf_dir, max_creates_per_minute, max_updates_per_second) + further


def _carbon_cache_section(storage_dir: str, conf_dir: str, max_creates_per_minute: int,
                          max_updates_per_second: int) -> str:
    return f"""# Managed by Bay (bay_salt.metrics.graphite)
[cache]
STORAGE_DIR = {storage_dir}
LOCAL_DATA_DIR = {storage_dir}/whisper
WHITELISTS_DIR = {storage_dir}/lists
CONF_DIR = {conf_dir}
LOG_DIR = {storage_dir}/log
PID_DIR = {storage_dir}
USER =
MAX_CACHE_SIZE = 2000000
MAX_UPDATES_PER_SECOND = {max_updates_per_second}
MAX_CREATES_PER_MINUTE = {max_creates_per_minute}
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {LINE_PORT}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {PICKLE_PORT}
PICKLE_RECEIVER_MAX_LENGTH = {carbon.MAX_MESSAGE}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {CACHE_QUERY_PORT}
USE_FLOW_CONTROL = True
LOG_UPDATES = False
LOG_CREATES = False
LOG_CACHE_HITS = False
LOG_LISTENER_CONNECTIONS = False
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = True
CARBON_METRIC_INTERVAL = 10
"""


def storage_schemas(retentions: str) -> str:
    parts = ",".join(check_retentions(retentions))
    return ("# Managed by Bay (bay_salt.metrics.graphite)\n"
            "[carbon]\npattern = ^carbon\\.\nretentions = 10s:1d,1m:30d\n\n"
            f"[bay]\npattern = .*\nretentions = {parts}\n")


def storage_aggregation() -> str:
    out = ["# Managed by Bay (bay_salt.metrics.graphite)"]
    for name, pattern, method in AGGREGATION:
        out += [f"[{name}]", f"pattern = {pattern}", "xFilesFactor = 0", f"aggregationMethod = {method}", ""]
    return "\n".join(out)


def web_settings(storage_dir: str, static_root: str, secret_key: str, webapp_dir: str, count: int = 1) -> str:
    """graphite-web's local settings (imported as :data:`SETTINGS_MODULE`);
    it asks each of the ``count`` carbon-caches for the series carbon's ring gives it."""
    return f"""# Managed by Bay (bay_salt.metrics.graphite); a secret (SECRET_KEY): root only
SECRET_KEY = {secret_key!r}
ALLOWED_HOSTS = ["*"]
TIME_ZONE = "UTC"
STORAGE_DIR = {storage_dir!r}
WHISPER_DIR = {storage_dir + "/whisper/"!r}
LOG_DIR = {storage_dir + "/log/webapp"!r}
INDEX_FILE = {storage_dir + "/index"!r}
STATIC_ROOT = {static_root!r}
WEBAPP_DIR = {webapp_dir!r}
STATICFILES_DIRS = ({webapp_dir + "/content"!r},)
CARBONLINK_HOSTS = {[f"127.0.0.1:{c.query_port}:{c.instance}" for c in caches(count)]!r}
CARBONLINK_TIMEOUT = 2.0
DEFAULT_CACHE_DURATION = 0
LOG_RENDERING_PERFORMANCE = False
LOG_CACHE_PERFORMANCE = False
"""


def write_config(base: Path, retentions: str, secret_key: str, webapp_dir: str, count: int = 1) -> dict[str, Path]:
    """Every file carbon and graphite-web need under ``base`` (conf/, storage/,
    static/); returns the paths the daemons are started with."""
    conf, storage, static = base / "conf", base / "storage", base / "static"
    for d in (conf, storage / "whisper", storage / "lists", storage / "log" / "webapp", static):
        d.mkdir(parents=True, exist_ok=True)
    (conf / "carbon.conf").write_text(carbon_conf(str(storage), str(conf), count=count))
    (conf / "storage-schemas.conf").write_text(storage_schemas(retentions))
    (conf / "storage-aggregation.conf").write_text(storage_aggregation())
    settings = conf / f"{SETTINGS_MODULE}.py"
    settings.write_text(web_settings(str(storage), str(static), secret_key, webapp_dir, count))
    settings.chmod(0o600)
    return {"conf": conf, "storage": storage, "static": static}
