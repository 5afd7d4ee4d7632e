"""Who may do what in the registry: users (bcrypt password hashes), each
with grants (repository patterns and the actions allowed there), checked on
every request.

* ``token`` mode (what Docker and OCI clients expect): a request without a
  valid token gets ``401`` with ``WWW-Authenticate: Bearer realm=...,
  service=..., scope=repository:NAME:ACTIONS``; the client asks the token
  endpoint (``GET /token``, HTTP basic credentials) and gets a short-lived
  JWT carrying only the granted part of the requested scopes, signed with a
  secret every instance shares (so any instance accepts any instance's token);
* ``basic`` mode: HTTP basic credentials on every request;
* ``anonymous_pull``: pulls need no credentials (off unless a site turns it on).

Actions are ``pull``, ``push`` and ``delete``; ``*`` grants all three. The
catalog (``registry:catalog:*``) is for users granted ``*`` on ``*``.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hmac
import secrets
import time
from dataclasses import dataclass, field

import bcrypt
import jwt

from bay_salt.model.services import REPOSITORY_RE

ACTIONS = ("pull", "push", "delete")
SERVICE = "bay-registry"
ISSUER = "bay-registry"
#: seconds a verified password is not checked again with bcrypt
CHECKED_FOR = 60


def hash_password(password: str) -> str:
    """A bcrypt hash (what ``htpasswd -B`` writes) of ``password``."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


@dataclass(frozen=True)
class Grant:
    pattern: str  # a repository name or a glob over names (``bay/*``, ``*``)
    actions: frozenset[str]

    def covers(self, repo: str) -> set[str]:
        if not fnmatch.fnmatchcase(repo, self.pattern):
            return set()
        return set(ACTIONS) if "*" in self.actions else set(self.actions) & set(ACTIONS)


@dataclass
class Policy:
    """The registry's access policy (from its auth file, written from pillar)."""

    mode: str = "none"  # token | basic | none
    secret: str = field(default="", repr=False)
    token_ttl: int = 300
    anonymous_pull: bool = False
    users: dict[str, str] = field(default_factory=dict, repr=False)  # name -> bcrypt hash
    grants: dict[str, list[Grant]] = field(default_factory=dict)  # name -> grants
    # credentials verified recently (bcrypt costs ~50 ms of CPU; a node pull asks a token each time):
    # HMACs under a key of this process, never a password; a changed hash is a new key
    _checked: dict[bytes, float] = field(default_factory=dict, repr=False)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def from_dict(cls, d: dict) -> Policy:
        grants = {u: [Grant(g["repository"], frozenset(g["actions"])) for g in gs]
                  for u, gs in (d.get("grants") or {}).items()}
        return cls(d.get("mode", "none"), d.get("secret", ""), int(d.get("token_ttl", 300)),
                   bool(d.get("anonymous_pull", False)), dict(d.get("users") or {}), grants)

    @property
    def on(self) -> bool:
        return self.mode in ("token", "basic")

    # --- who ---------------------------------------------------------------------------
    def login(self, header: str | None) -> str | None:
        """The user of an ``Authorization: Basic`` header, if the password
        matches; None for no or wrong credentials."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            name, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = self.users.get(name)
        if not hashed:
            return None
        key = hmac.digest(self._key, b"\0".join((name.encode(), password.encode(), hashed.encode())), "sha256")
        now = time.monotonic()
        if self._checked.get(key, 0) > now:
            return name
        if bcrypt.checkpw(password.encode(), hashed.encode()):
            if len(self._checked) > 10_000:  # forget the expired ones
                self._checked = {k: t for k, t in self._checked.items() if t > now}
            self._checked[key] = now + CHECKED_FOR
            return name
        return None

    # --- what ----------------------------------------------------------------------------
    def allowed(self, user: str | None, repo: str) -> set[str]:
        """The actions ``user`` (None: anonymous) may take on ``repo``."""
        out: set[str] = set()
        if user is not None:
            for g in self.grants.get(user, []):
                out |= g.covers(repo)
        if self.anonymous_pull:
            out.add("pull")
        return out

    def may_list_catalog(self, user: str | None) -> bool:
        return user is not None and any(g.pattern == "*" and "*" in g.actions for g in self.grants.get(user, []))

    # --- tokens --------------------------------------------------------------------------
    def issue(self, user: str | None, scopes: list[str]) -> dict:
        """A token for what ``user`` asked (``repository:NAME:pull,push``), cut
        down to what it may; the token endpoint's answer."""
        access = []
        for scope in scopes:
            for part in scope.split(" "):
                kind, _, rest = part.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and name:
                    granted = sorted(set(actions.split(",")) & self.allowed(user, name))
                    access.append({"type": "repository", "name": name, "actions": granted})
                elif kind == "registry" and name == "catalog" and self.may_list_catalog(user):
                    access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now, "nbf": now - 5,
                  "exp": now + self.token_ttl, "access": access}
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return {"token": token, "access_token": token, "expires_in": self.token_ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def bearer(self, header: str | None) -> dict | None:
        """The claims of a valid ``Authorization: Bearer`` token, else None."""
        if not header or not header.lower().startswith("bearer "):
            return None
        try:
            return jwt.decode(header[7:].strip(), self.secret, algorithms=["HS256"], audience=SERVICE,
                              issuer=ISSUER)
        except jwt.PyJWTError:
            return None


def token_allows(claims: dict, kind: str, name: str, action: str) -> bool:
    for a in claims.get("access", []):
        if a.get("type") == kind and a.get("name") == name and (action in a.get("actions", [])
                                                                 or "*" in a.get("actions", [])):
            return True
    return False


def grants_for(services: dict, registry_host: str, admins: list[str], node_user: str,
               teams: dict[str, list[str]] | None = None) -> dict[str, list[dict]]:
    """Who may do what, from the services pillar: the nodes pull everything;
    each service's owners (people, or the members of teams) pull, push and
    delete the repositories its images name; admins everything."""
    teams = teams or {}
    out: dict[str, list[dict]] = {node_user: [{"repository": "*", "actions": ["pull"]}]}
    for admin in admins:
        out.setdefault(admin, []).append({"repository": "*", "actions": ["*"]})
    for spec in services.values():
        images = {spec.get("image")} | {g.get("image") for g in (spec.get("groups") or {}).values()}
        # only names of the distribution grammar: a spec that slipped past validation grants no glob
        repos = sorted({r for r in (repository_of(i, registry_host) for i in images if i) if REPOSITORY_RE.match(r)})
        people = {p for owner in spec.get("owners") or [] for p in teams.get(owner, [owner])}
        for person in sorted(people):
            for repo in repos:
                grant = {"repository": repo, "actions": ["pull", "push", "delete"]}
                if grant not in out.setdefault(person, []):  # two services of one image and owner: one grant
                    out[person].append(grant)
    return out


def repository_of(image: str, registry_host: str) -> str:
    """``HOST:PORT/bay/demo:1`` -> ``bay/demo`` (the registry's own host prefix and the tag or digest dropped)."""
    name = image.split("@")[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first == registry_host):
        name = rest
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1]) + last[-1].index(":")]
    return name
