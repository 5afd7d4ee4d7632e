"""The site's settings as the master needs them: who operates what (admins,
teams, owners), the services pillar, the controller's and the alerts'
settings, where metrics, logs and Consul are.

A node reports them with its own answer (:func:`report`, in
``bay.node_report``); the master reads them from its own pillar
(:func:`master_view`), which needs no node to answer: a command answers in
seconds while a node is cut off, and no node's root chooses what the master
believes about the site."""

from __future__ import annotations

import os

from bay_salt.logs import nodefiles as log_nodefiles
from bay_salt.metrics import nodefiles
from bay_salt.model import settings as bay_settings


class SiteError(ValueError):
    """The master's pillar does not give valid site settings (one line naming the key or the file)."""


def report(cfg: dict) -> dict:
    """The site-wide part of a node's report from its loaded settings (secrets redacted)."""
    shown = bay_settings.redacted(cfg)
    return {
        "services": shown.get("services", {}),
        "controller": cfg["controller"],
        "admins": cfg["admins"],
        "teams": cfg["teams"],
        "cadvisor_port": cfg["cadvisor"]["port"],
        "monitoring": nodefiles.report(cfg),
        "logs": log_nodefiles.report(cfg),
        # the alert evaluator's settings (no secret: the SMTP password is a file on the master)
        "alerts": cfg["alerts"],
        "registry_storage": cfg["registry"]["storage"],
        # with TLS the servers' API is HTTPS on the network (HTTP on loopback only)
        "consul": {"servers": cfg["consul"]["server_addresses"], "http_port": cfg["consul"]["http_port"],
                   "https_port": cfg["consul"]["https_port"] if cfg["consul"]["tls"]["ca_file"] else None},
        # the nodes' addresses where the pillar gives them (bay:nodes), so no node has to be asked
        "addresses": {n: v["address"] for n, v in sorted(cfg["nodes"].items()) if v.get("address")},
    }


def formula_defaults(file_roots: list[str]) -> dict:
    """The ``bay`` key of ``bay/defaults.yaml`` from the first of the master's ``file_roots`` that has it."""
    for root in file_roots:
        path = os.path.join(root, "bay", "defaults.yaml")
        if os.path.isfile(path):
            return bay_settings.read_defaults(path)
    raise SiteError(f"bay/defaults.yaml is in none of the master's file_roots ({', '.join(file_roots) or 'none'})")


def from_pillar(defaults: dict, pillar: dict) -> dict:
    """The site report from a compiled pillar (Salt's render errors and invalid settings named in one line)."""
    errors = pillar.get("_errors")
    if errors:
        raise SiteError(f"the master's pillar does not render: {str(errors[0]).splitlines()[0][:300]}")
    try:
        return report(bay_settings.load(defaults, pillar.get("bay", {})))
    except bay_settings.SettingsError as err:
        raise SiteError(str(err)) from None


def master_view(opts: dict, minion_id: str) -> dict:
    """The site report from the master's own pillar, compiled as for
    ``minion_id`` (the top file's targets; its grains as the master last
    cached them, none if it did not), with the formula defaults from the
    master's ``file_roots``. No node is asked."""
    import salt.cache
    import salt.pillar

    saltenv = opts.get("saltenv") or "base"
    try:
        cached = salt.cache.factory(opts).fetch(f"minions/{minion_id}", "data") or {}
    except Exception:  # noqa: BLE001 - a cache the master cannot read: no grains, as for a new minion
        cached = {}
    pillar = salt.pillar.get_pillar(opts, cached.get("grains") or {}, minion_id, saltenv=saltenv,
                                    pillarenv=opts.get("pillarenv")).compile_pillar()
    return from_pillar(formula_defaults(opts.get("file_roots", {}).get(saltenv, [])), pillar)
