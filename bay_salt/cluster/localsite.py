"""What ``bay up`` keeps of a local cluster's site on this machine, in its
state directory (root only): the pillar the masters read (``pillar/``), the
CA and the passwords of the tools on this machine (``pki/``). Files only:
nothing here talks to a container."""

from __future__ import annotations

from pathlib import Path

import yaml

from bay_salt.cluster import pki
from bay_salt.cluster.sitefiles import REGISTRY_ADMIN


class LocalSite:
    def __init__(self, state_dir: Path, name: str):
        self.state_dir = state_dir
        self.name = name
        self.pillar_dir = state_dir / "pillar"
        self.pki_dir = state_dir / "pki"

    def ca(self) -> pki.Pair:
        """The cluster's CA (made once, kept in the state directory, root only)."""
        if (self.pki_dir / "ca-key.pem").exists():
            return pki.Pair((self.pki_dir / "ca.pem").read_text(), (self.pki_dir / "ca-key.pem").read_text())
        self.pki_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        authority = pki.ca(f"Bay {self.name} CA")
        (self.pki_dir / "ca.pem").write_text(authority.cert_pem)
        (self.pki_dir / "ca-key.pem").write_text(authority.key_pem)
        (self.pki_dir / "ca-key.pem").chmod(0o600)
        return authority

    def write_secret(self, path: Path, text: str) -> None:
        """``text`` at ``path`` (in the state directory), readable by root only."""
        path.write_text(text)
        path.chmod(0o600)

    def registry_login(self) -> tuple[str, str, Path]:
        """(user, password, cert dir) for pushing to this cluster's registry from this machine."""
        return REGISTRY_ADMIN, (self.pki_dir / "registry-admin").read_text(), self.pki_dir

    def pillar(self) -> dict:
        """The generated ``bay:`` pillar (topology, Consul, the registry's storage)."""
        return yaml.safe_load((self.pillar_dir / "bay.sls").read_text())["bay"]

    def pull_registry(self) -> str:
        """The registry the nodes pull from (each through its own HAProxy)."""
        return self.pillar()["docker"]["registry"]

    def consul_token(self) -> str | None:
        """The controller's Consul token (what the master uses), for tools on this machine."""
        path = self.pillar_dir / "bay-secrets-server.sls"
        if not path.exists():
            return None
        return yaml.safe_load(path.read_text())["bay"]["consul"]["acl"]["tokens"]["controller"]

    def services_pillar(self) -> dict:
        """The cluster's services pillar as written (``{"bay": {"services": ...}}``)."""
        return yaml.safe_load((self.pillar_dir / "services.sls").read_text()) or {}
