"""Graphite as Bay runs it (``bay.monitoring``): carbon-cache writing whisper
files, graphite-web for the render API and dashboards, both on loopback.

Everything here renders configuration from the ``bay:monitoring`` settings,
so the Salt state, ``bay up`` and the tests start the same daemons with the
same files. PyPI's carbon/whisper/graphite-web 1.1.10 (installed with
``GRAPHITE_NO_PREFIX=True`` into a venv of their own) are used: Debian's
graphite-web 1.1.8 has a broken dashboard page (../shared/ENVIRONMENT.md).
"""

from __future__ import annotations

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


def carbon_conf(storage_dir: str, conf_dir: str, max_creates_per_minute: int = 6000,
                max_updates_per_second: int = 10000) -> str:
    """carbon.conf: every receiver on loopback (HAProxy takes the nodes' TLS
    connections), no UDP, creates limited so a burst of new series cannot starve updates."""
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


def web_settings(storage_dir: str, static_root: str, secret_key: str, webapp_dir: str) -> str:
    """graphite-web's local settings (imported as :data:`SETTINGS_MODULE`)."""
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
CARBONLINK_HOSTS = ["127.0.0.1:{CACHE_QUERY_PORT}:a"]
CARBONLINK_TIMEOUT = 2.0
DEFAULT_CACHE_DURATION = 0
LOG_RENDERING_PERFORMANCE = False
LOG_CACHE_PERFORMANCE = False
"""


def write_config(base: Path, retentions: str, secret_key: str, webapp_dir: str) -> dict[str, Path]:
    """Every file carbon and graphite-web need under ``base`` (conf/, storage/,
    static/); returns the paths the daemons are started with."""
    conf, storage, static = base / "conf", base / "storage", base / "static"
    for d in (conf, storage / "whisper", storage / "lists", storage / "log" / "webapp", static):
        d.mkdir(parents=True, exist_ok=True)
    (conf / "carbon.conf").write_text(carbon_conf(str(storage), str(conf)))
    (conf / "storage-schemas.conf").write_text(storage_schemas(retentions))
    (conf / "storage-aggregation.conf").write_text(storage_aggregation())
    settings = conf / f"{SETTINGS_MODULE}.py"
    settings.write_text(web_settings(str(storage), str(static), secret_key, webapp_dir))
    settings.chmod(0o600)
    return {"conf": conf, "storage": storage, "static": static}
