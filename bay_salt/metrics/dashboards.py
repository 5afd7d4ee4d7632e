"""Dashboards: one for the platform and one for every service, defined once
(:func:`service_panels`, :func:`platform_panels`) and written as
graphite-web dashboards (provisioned into Bay's graphite-web) and as Grafana
JSON (for sites that run Grafana; Grafana itself is not run by Bay).

The targets follow the naming scheme in :mod:`bay_salt.model.names`
(docs/metrics.md).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass

from bay_salt.metrics import graphite
from bay_salt.model import names


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[str, ...]
    vtitle: str = ""
    #: draw from zero up (counts, ratios)
    ymin: float | None = None


def dashboard_name(cluster: str, service: str | None = None) -> str:
    """``bay-CLUSTER-platform`` or ``bay-CLUSTER-service-SERVICE``."""
    c = names.metric_part(cluster)
    return f"bay-{c}-platform" if service is None else f"bay-{c}-service-{names.metric_part(service)}"


def service_panels(cluster: str, service: str, groups: list[str]) -> list[Panel]:
    out = []
    for g in groups:
        c = names.metric_path(cluster, "containers", service, g)
        grp = names.metric_path(cluster, "groups", service, g)
        tr = names.metric_path(cluster, "traffic", service, g)
        sg = f"{service}.{g}"
        out += [
            Panel(f"{sg}: instances", (f"aliasByMetric({grp}.{{desired,registered,passing}})",), "instances", 0),
            Panel(f"{sg}: healthy ratio", (f"alias({grp}.healthy_ratio,'healthy ratio')",), "ratio", 0),
            Panel(f"{sg}: restarts and replacements", (f"aliasByMetric({grp}.{{restarts,failed}})",), "per interval", 0),
            Panel(f"{sg}: CPU per instance", (f"aliasByNode({c}.*.cpu_cores,5)",), "cores", 0),
            Panel(f"{sg}: memory per instance", (f"aliasByNode({c}.*.memory_bytes,5)",), "bytes", 0),
            Panel(f"{sg}: network per instance", (f"aliasByNode({c}.*.net_{{rx,tx}}_bps,5,6)",), "bytes/s", 0),
            Panel(f"{sg}: requests per second", (f"alias(sumSeries({tr}.*.request_rate),'requests/s')",), "req/s", 0),
            Panel(f"{sg}: errors", (f"alias(sumSeries({tr}.*.errors_5xx),'5xx')",
                                    f"alias(sumSeries({tr}.*.connection_errors),'connection failures')",
                                    f"alias(sumSeries({tr}.*.retries),'retries')",
                                    f"alias(sumSeries({tr}.*.redispatches),'redispatches')"), "per interval", 0),
            Panel(f"{sg}: response time", (f"aliasByNode({tr}.*.response_ms,5)",), "ms", 0),
            Panel(f"{sg}: autoscaler (when on)", (f"aliasByMetric({grp}.autoscale.{{desired,recommendation}})",
                                                  f"alias(scale({grp}.autoscale.utilisation,10),'utilisation x10')"),
                  "instances", 0),
        ]
    own = names.metric_path(cluster, "services", service)
    out.append(Panel(f"{service}: own metrics (statsd, per second)",
                     (f"aliasByNode(sumSeriesWithWildcards({own}.*.*.*.rate,5),4,6)",), "per second", 0))
    return out


def platform_panels(cluster: str) -> list[Panel]:
    p = names.metric_path(cluster, "platform")
    n = names.metric_path(cluster, "nodes")
    reg = names.metric_path(cluster, "traffic", names.REGISTRY_SERVICE, names.REGISTRY_GROUP)
    return [
        Panel("nodes by state", (f"aliasByMetric({p}.nodes.*)",), "nodes", 0),
        Panel("instances", (f"aliasByMetric({p}.instances.*)",), "instances", 0),
        Panel("groups: healthy ratio", (f"aliasByNode({names.metric_path(cluster, 'groups')}.*.*.healthy_ratio,3,4)",),
              "ratio", 0),
        Panel("controller actions", (f"aliasByMetric({p}.controller.actions.*)",), "per interval", 0),
        Panel("controller: death to replacement routed", (f"aliasByMetric({p}.controller.replace_seconds.*)",), "s", 0),
        Panel("reconciliation", (f"aliasByMetric({p}.reconcile.*)",), "ms / count", 0),
        Panel("autoscaler: desired instances", (f"aliasByNode({names.metric_path(cluster, 'groups')}.*.*.autoscale.desired,3,4)",),
              "instances", 0),
        Panel("node CPU", (f"aliasByNode({n}.*.cpu_percent,3)",), "%", 0),
        Panel("node memory", (f"aliasByNode({n}.*.memory_percent,3)",), "%", 0),
        Panel("node disk (root)", (f"aliasByNode({n}.*.disk.root.percent,3)",), "%", 0),
        Panel("node network", (f"aliasByNode({n}.*.net_{{rx,tx}}_bps,3,4)",), "bytes/s", 0),
        Panel("components down", (f"aliasByNode(removeAboveValue({n}.*.components.*,0.5),3,5)",), "down", 0),
        Panel("registry requests", (f"alias(sumSeries({reg}.*.requests),'requests')",
                                    f"alias(sumSeries({reg}.*.errors_5xx),'5xx')"), "per interval", 0),
        Panel("registry bytes", (f"alias(sumSeries({reg}.*.bytes_out),'out')", f"alias(sumSeries({reg}.*.bytes_in),'in')"),
              "bytes per interval", 0),
        Panel("metrics agents: points dropped, queued", (f"aliasByNode({n}.*.agent.{{dropped,queued}},3,5)",), "points", 0),
    ]


def _params(panel: Panel, width: int, height: int) -> dict:
    params = {"target": list(panel.targets), "title": panel.title, "width": width, "height": height}
    if panel.vtitle:
        params["vtitle"] = panel.vtitle
    if panel.ymin is not None:
        params["yMin"] = panel.ymin
    return params


def graphite_state(name: str, panels: list[Panel], width: int = 480, height: int = 260) -> dict:
    """A graphite-web dashboard's state (what its dashboard page saves)."""
    graphs = []
    for panel in panels:
        params = _params(panel, width, height)
        target = "&".join("target=" + urllib.parse.quote(t) for t in panel.targets)
        url = "/render?" + urllib.parse.urlencode(params, doseq=True)
        graphs.append([target, params, params, url])
    return {
        "name": name,
        "timeConfig": {"type": "relative", "relativeStartQuantity": "30", "relativeStartUnits": "minutes",
                       "relativeUntilQuantity": "", "relativeUntilUnits": "now", "startDate": "", "startTime": "",
                       "endDate": "", "endTime": ""},
        "refreshConfig": {"enabled": True, "interval": 60000},
        "graphSize": {"width": width, "height": height},
        "defaultGraphParams": {"from": "-30minutes", "until": "now", "width": width, "height": height},
        "graphs": graphs,
    }


def grafana(title: str, uid: str, panels: list[Panel]) -> dict:
    """The same dashboard as Grafana JSON (a Graphite datasource picked at import)."""
    out = []
    for i, panel in enumerate(panels):
        out.append({
            "id": i + 1, "type": "timeseries", "title": panel.title,
            "datasource": {"type": "graphite", "uid": "${DS_GRAPHITE}"},
            "gridPos": {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8},
            "fieldConfig": {"defaults": {"unit": "short", **({"min": panel.ymin} if panel.ymin is not None else {}),
                                         "custom": {"axisLabel": panel.vtitle}}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + k), "target": t} for k, t in enumerate(panel.targets)],
        })
    return {
        "__inputs": [{"name": "DS_GRAPHITE", "label": "Graphite", "type": "datasource", "pluginId": "graphite",
                      "pluginName": "Graphite"}],
        "title": title, "uid": uid[:40], "tags": ["bay"], "timezone": "utc", "schemaVersion": 39,
        "time": {"from": "now-30m", "to": "now"}, "refresh": "30s", "panels": out,
    }


def service_groups(services: dict) -> dict[str, list[str]]:
    """service -> its group names, from the services pillar (raw or validated)."""
    out = {}
    for svc, spec in sorted((services or {}).items()):
        if isinstance(spec, dict):
            out[svc] = sorted((spec.get("groups") or {}).keys())
    return out


def all_dashboards(cluster: str, services: dict) -> dict[str, list[Panel]]:
    """name -> panels: the platform's and one per service."""
    out = {dashboard_name(cluster): platform_panels(cluster)}
    for svc, groups in service_groups(services).items():
        out[dashboard_name(cluster, svc)] = service_panels(cluster, svc, groups)
    return out


def urls(web: str, cluster: str, services: dict) -> dict[str, str]:
    """name -> the URL of its dashboard page in graphite-web."""
    return {n: f"{web.rstrip('/')}/dashboard/{n}" for n in all_dashboards(cluster, services)}


def save(web: str, name: str, panels: list[Panel], timeout: float = 10.0, headers: dict | None = None) -> None:
    """Write one dashboard into graphite-web (its ``/dashboard/save/NAME``)."""
    body = urllib.parse.urlencode({"state": json.dumps(graphite_state(name, panels))}).encode()
    req = urllib.request.Request(f"{web.rstrip('/')}/dashboard/save/{name}", data=body, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answer = json.load(resp)
    if not answer.get("success"):
        raise OSError(f"graphite-web did not save dashboard {name}: {answer.get('error', answer)}")


def load(web: str, name: str, timeout: float = 10.0) -> dict | None:
    """A dashboard's state as graphite-web holds it (None: it has none of that name)."""
    try:
        with urllib.request.urlopen(f"{web.rstrip('/')}/dashboard/load/{name}", timeout=timeout) as resp:
            return json.load(resp).get("state")
    except ValueError:
        return None


def provision(cfg: dict, web: str | None = None, dry_run: bool = False) -> list[str]:
    """Every dashboard into this monitoring node's graphite-web (loopback),
    where it differs from what graphite-web holds: the names written (or, with
    ``dry_run``, that would be)."""
    web = web or f"http://127.0.0.1:{graphite.WEB_PORT}"
    # graphite-web may still be starting (its service was just started or restarted)
    from bay_salt.util import retry

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{web}/dashboard/find/?query=bay", timeout=5):
                return True
        except OSError:
            return False

    try:
        retry.until(answers, "graphite-web answering", timeout=60, interval=0.5)
    except retry.GaveUp:
        raise OSError(f"graphite-web at {web} does not answer (systemctl status bay-graphite-web)") from None
    made = []
    for name, panels in all_dashboards(cfg["cluster"], cfg.get("services") or {}).items():
        if load(web, name) == json.loads(json.dumps(graphite_state(name, panels))):
            continue
        if not dry_run:
            save(web, name, panels)
        made.append(name)
    return made
