"""The `bay:` pillar: its schema, defaults merging and validation.

Salt's map.jinja hands the formula defaults and the pillar to :func:`load`,
which returns one validated dict for the states to look up. Any problem
raises :class:`SettingsError` naming the pillar key, so a bad pillar fails the
render before a single state runs.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import re
from typing import Any, Literal

import salt.utils.dictupdate
import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from bay_salt.model.base import REDACTED as REDACTED  # what redacted() shows, named here for its callers
from bay_salt.model.base import Secret, Strict, redact, secret_paths
from bay_salt.model.services import Egress, Service
from bay_salt.model.units import check_retentions, data_bytes, finest_seconds, seconds, size_bytes

ROLES = ("worker", "registry", "mesos-agent", "monitoring", "kafka")
_SIZE_RE = re.compile(r"^([1-9][0-9]*)([kmg]?)$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,62}[a-z0-9])?$")


class SettingsError(ValueError):
    """The `bay:` pillar is invalid; the message names the key."""




Port = Field(ge=1, le=65535)


class Node(Strict):
    address: str | None = None
    roles: list[str] = Field(default_factory=lambda: ["worker"])

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r} (known: {', '.join(ROLES)})")
        return value


class Python(Strict):
    bin_env: str
    packages: list[str]
    find_links: list[str] = []
    no_index: bool = False


class Hygiene(Strict):
    """What each node's agent clears up after its Docker engine
    (:mod:`bay_salt.node.hygiene`): stale port-forwarding rules and conntrack
    entries, veths in no bridge, Bay's dead containers, dangling images and
    anonymous volumes beyond a cap. ``remove: false``: found and reported only."""

    interval: float = Field(600.0, ge=0, description="seconds between two looks (or 10m); 0: never on its own")
    remove: bool = True
    dead_after: float = Field(3600.0, ge=0, description="a Bay container exited this long is removed (or 1h)")
    images_kept: int = Field(5, ge=0)
    volumes_kept: int = Field(5, ge=0)

    _dur = field_validator("interval", "dead_after", mode="before")(classmethod(lambda cls, v: seconds(v)))


class Docker(Strict):
    package: str
    service: str
    data_root: str
    log_driver: str
    log_max_size: str
    log_max_file: int = Field(ge=1)
    live_restore: bool
    registry: str = ""
    hygiene: Hygiene = Hygiene()

    @field_validator("log_max_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _SIZE_RE.match(str(value).lower()):
            raise ValueError(f"{value!r} is not a positive size like 10m, 512k or 1g")
        return str(value).lower()

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        if value:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not host:port")
        return value


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: the Consul ACL roles Bay gives tokens to (bay_salt.node.consul_acl has each one's rules)
ACL_ROLES = ("management", "agent", "reader", "registry", "controller")


class ConsulACL(Strict):
    """Consul ACLs, default deny. ``tokens``: each role's SecretID (a UUID; a
    secret, given only to the nodes that need it): management (Consul
    servers: bootstraps ACLs and creates the others), agent (every node),
    reader (every node: bay-lb-sync and bay-events read routes and
    instances), registry (registry nodes), controller (servers, to create it;
    the master reads it from its own file). ``node_tokens``: a node's own
    agent token (node id -> SecretID), which may write that node only (Consul's
    node identity); a node with one is given neither the shared ``agent``
    token nor another node's (the servers create every node's)."""

    enabled: bool = True
    tokens: dict[str, Secret] = Field(default_factory=dict)
    node_tokens: dict[str, Secret] = Field(default_factory=dict)

    @field_validator("node_tokens")
    @classmethod
    def _node_tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for node, secret in value.items():
            if not _UUID_RE.match(secret.get_secret_value()):
                raise ValueError(f"{node}: not a UUID (uuidgen makes one)")  # the value is a secret: not shown
        return value

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for role, secret in value.items():
            if role not in ACL_ROLES:
                raise ValueError(f"unknown role {role!r} (known: {', '.join(ACL_ROLES)})")
            if not _UUID_RE.match(secret.get_secret_value()):
                # the message must not contain the value: it is a secret
                raise ValueError(f"{role}: not a UUID (uuidgen makes one)")
        return value


class ConsulTLS(Strict):
    """TLS for Consul's RPC (verify incoming and outgoing, server names
    checked) where the site gives a CA and this node's certificate."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @model_validator(mode="after")
    def _all_or_none(self) -> ConsulTLS:
        if any((self.ca_file, self.cert_file, self.key_file)) and not all((self.ca_file, self.cert_file,
                                                                            self.key_file)):
            raise ValueError("tls: give ca_file, cert_file and key_file together (or none)")
        return self


class ConsulGossip(Strict):
    """LAN gossip timings (Consul's ``gossip_lan``): how soon a silent node is
    declared failed. A node is probed every ``probe_interval``; one that does
    not answer within ``probe_timeout`` (nor to the others' indirect probes)
    is suspected, and declared failed after ``suspicion_mult`` x log10(agents)
    x ``probe_interval`` once another agent confirms it (up to 6x that with no
    confirmation). Consul's defaults (1s, 500ms, 4) take 5-12 s in a cluster
    of a few nodes; these take 2-5 s, at the price of twice the probes."""

    probe_interval: str = "500ms"
    probe_timeout: str = "300ms"
    suspicion_mult: int = Field(default=3, ge=2, le=10)

    @field_validator("probe_interval", "probe_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not 0.05 <= seconds(value) <= 60:
            raise ValueError(f"{value!r}: give a duration between 50ms and 60s")
        return value

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> ConsulGossip:
        if seconds(self.probe_timeout) >= seconds(self.probe_interval):
            raise ValueError("gossip_lan: probe_timeout must be shorter than probe_interval")
        return self


class Consul(Strict):
    source: Literal["hashicorp", "debian-bullseye", "none"]
    hashicorp_repo: str
    package: str
    datacenter: str
    data_dir: str
    config_dir: str
    servers: list[str] = []
    http_port: int = Port
    #: the servers' HTTPS API on their address, for the master (with ``tls``: then HTTP stays on loopback)
    https_port: int = Port
    dns_port: int = Port
    ui: bool = False
    #: scales the servers' Raft timings; 1 (HashiCorp's production recommendation) finds a lost
    #: leader and elects a new one about 5x sooner than Consul's default of 5
    raft_multiplier: int = Field(default=1, ge=1, le=10)
    #: autopilot removes a failed server from the Raft peers; off, a server that comes back
    #: (a reboot) is a voter again at once, so a rolling restart never drops below quorum
    cleanup_dead_servers: bool = False
    gossip_lan: ConsulGossip = Field(default_factory=ConsulGossip)
    # gossip encryption key (base64 of 16, 24 or 32 bytes); a secret: never echoed
    encrypt: Secret = SecretStr("")
    acl: ConsulACL = Field(default_factory=ConsulACL)
    tls: ConsulTLS = Field(default_factory=ConsulTLS)

    @field_validator("encrypt")
    @classmethod
    def _encrypt(cls, value: SecretStr) -> SecretStr:
        if value:
            try:
                raw = base64.b64decode(value.get_secret_value(), validate=True)
            except (ValueError, binascii.Error):
                raw = b""
            if len(raw) not in (16, 24, 32):
                # the message must not contain the value: it is a secret
                raise ValueError("not a base64-encoded 16, 24 or 32 byte key (consul keygen makes one)")
        return value

    @field_validator("datacenter")
    @classmethod
    def _dc(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid datacenter name")
        return value


class HAProxy(Strict):
    package: str
    config: str
    services_config: str
    socket: str
    stats_port: int = Port
    maxconn: int = Field(ge=1)


class CAdvisor(Strict):
    package: str
    port: int = Port
    housekeeping_interval: str


class Mesos(Strict):
    enabled: bool = False
    repo: str = ""
    package: str = "mesos"
    zk: str = ""
    containerizers: list[Literal["docker", "mesos"]] = ["docker", "mesos"]
    work_dir: str
    attributes: dict[str, str] = {}
    resources: dict[str, str | int | float] = {}

    @model_validator(mode="after")
    def _zk(self) -> Mesos:
        if self.enabled and not self.zk.startswith("zk://"):
            raise ValueError("zk: mesos is enabled, so zk must be a zk://host:port,.../mesos URL")
        return self


class RegistryAuth(Strict):
    """Who may do what in the registry (:mod:`bay_salt.registry.auth`)."""

    #: token: Docker's token authentication (a 401 challenge, a token endpoint, scoped tokens);
    #: basic: HTTP basic credentials on every request; none: anyone anything (tests, a closed network)
    mode: Literal["token", "basic", "none"] = "token"
    #: signs the tokens; the same on every registry node (a secret: registry nodes only)
    secret: Secret = SecretStr("")
    token_ttl: int = Field(300, ge=5)
    #: pulls without credentials (off unless a site turns it on)
    anonymous_pull: bool = False
    #: name -> bcrypt hash of the password (`htpasswd -nB NAME`); registry nodes only
    users: dict[str, Secret] = Field(default_factory=dict)
    #: the account every node pulls with ...
    node_user: str = "node"
    #: ... and its password (a secret: every node writes it into docker's own login)
    node_password: Secret = SecretStr("")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if value and len(value) < 32:
            raise ValueError("shorter than 32 characters (openssl rand -hex 32 makes one)")
        return value


class RegistryTLS(Strict):
    """The registry's TLS: each registry node's HAProxy serves HTTPS with this
    certificate on ``instance_port`` in front of the instance, which serves
    plain HTTP on a UNIX socket in HAProxy's chroot (its blobs go out with
    sendfile, and no TCP hop is paid twice); every
    node's HAProxy passes the TLS through, and every node's Docker trusts this CA."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""


class Registry(Strict):
    #: HAProxy frontend of the registry on every node (docker pulls through it)
    port: int = Port
    #: where each registry instance is reached on its node (with TLS: its node's HAProxy, ending the TLS)
    instance_port: int = Port
    #: file:///PATH (a local or shared disk) or hdfs://NAMENODE:HTTPPORT[,NAMENODE2:HTTPPORT]/PATH
    storage: str
    #: seconds an unreferenced blob is kept (a push in flight may still reference it)
    gc_grace: float = Field(ge=0)
    #: seconds between two online garbage collections on each instance (0: never)
    gc_interval: float = Field(ge=0)
    #: blob GETs redirected to where storage serves them (HDFS: a DataNode the clients can reach);
    #: not used with a cache (then blobs are served from the instance's disk)
    blob_redirect: bool = False
    #: with remote storage (HDFS): each instance keeps blobs it has served on its own disk here ...
    cache_dir: str = "/var/cache/bay-registry"
    #: ... up to this size (``10Gi``, ``512Mi``; 0: no cache)
    cache_size: str | int = "10Gi"
    auth: RegistryAuth = Field(default_factory=RegistryAuth)
    tls: RegistryTLS = Field(default_factory=RegistryTLS)

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir(cls, value: str) -> str:
        if not re.match(r"^/[^\s]*$", value) or ".." in value.split("/"):
            raise ValueError(f"{value!r}: expected an absolute path")
        return value

    @field_validator("cache_size")
    @classmethod
    def _cache_size(cls, value: str | int) -> str | int:
        size_bytes(value)  # ValueError names it
        return value

    @property
    def cache_bytes(self) -> int:
        return size_bytes(self.cache_size)

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        if not re.match(r"^(file:///[^\s]*|hdfs://[A-Za-z0-9.:,_-]+/[^\s]*)$", value):
            raise ValueError(f"{value!r}: expected file:///PATH or hdfs://NAMENODE:PORT[,...]/PATH")
        return value

    @model_validator(mode="after")
    def _ports(self) -> Registry:
        if self.port == self.instance_port:
            raise ValueError("instance_port: must differ from port (HAProxy listens there on every node)")
        return self


class Controller(Strict):
    """The master's control loop (:mod:`bay_salt.control`)."""

    #: first restart of a crashed instance is immediate; the n-th in a row waits base * 2**(n-1) s ...
    restart_backoff: float = Field(gt=0)
    #: ... at most this long
    restart_backoff_max: float = Field(gt=0)
    #: this many restarts in a row mark the group failed (it is no longer restarted)
    crash_loop_restarts: int = Field(ge=1)
    #: a run of this many seconds resets the back-off
    backoff_reset: float = Field(gt=0)
    #: containers unknown to KV and older than this are strays a restarted controller removes
    stray_age: float = Field(ge=0)
    #: seconds between two autoscaling rounds (cAdvisor read, decisions)
    autoscale_interval: float = Field(gt=0)
    #: seconds an instance removed by a scale-down keeps running after it left every HAProxy
    scale_down_drain: float = Field(ge=0)
    #: seconds between two reconciliation passes (what every node runs against KV and the deployed specs)
    reconcile_interval: float = Field(gt=0)
    #: a deploy or scale that has held a group this long is taken for dead: the control loop takes the group back
    deploy_timeout: float = Field(gt=0)


class MonitoringTLS(Strict):
    """The node's certificate (signed by the cluster's CA): the metrics agent
    shows it to carbon, and the monitoring node serves carbon and graphite-web with it."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""


class Monitoring(Strict):
    """Metrics in Graphite (docs/metrics.md): a ``bay-metrics`` agent on every
    node, Graphite on the nodes with role ``monitoring`` (or a site's own)."""

    enabled: bool = True
    #: whisper retentions, finest first; the finest is the agents' and statsd's interval
    retention: str = "10s:1d,1m:30d,10m:1y"
    #: a site's own carbon pickle receiver (host:port); empty: Bay's, on the monitoring node
    carbon: str = ""
    #: Bay's carbon on the monitoring node: HAProxy takes TLS with a client certificate here
    carbon_port: int = Port
    #: carbon-caches on the monitoring node: the k-th on carbon_port + k (bay_salt.metrics.graphite)
    carbon_caches: int = Field(1, ge=1, le=8)
    #: a site's own graphite-web (URL); empty: Bay's, on the monitoring node
    web: str = ""
    #: Bay's graphite-web on the monitoring node: HAProxy serves it with TLS and a password here
    web_port: int = Port
    #: who may look: name -> SHA-512 crypt hash (``openssl passwd -6``); a secret
    web_users: dict[str, Secret] = {}
    #: graphite-web's Django secret key (a secret; the monitoring node only)
    secret_key: Secret = SecretStr("")
    #: points an agent keeps while carbon does not answer (the oldest go first)
    buffer_points: int = Field(ge=1000)
    #: statsd for services: UDP on the address containers reach their node at
    statsd_port: int = Port
    tls: MonitoringTLS = Field(default_factory=MonitoringTLS)

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str) -> str:

        check_retentions(value)
        return value

    @field_validator("carbon")
    @classmethod
    def _carbon(cls, value: str) -> str:
        if value and not re.match(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$", value):
            raise ValueError(f"{value!r}: expected HOST:PORT of carbon's pickle receiver")
        return value

    @field_validator("web_users")
    @classmethod
    def _users(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, hashed in value.items():
            if not re.match(r"^[a-z_][a-z0-9_-]*$", name):
                raise ValueError(f"{name!r} is not a user name")
            if not hashed.get_secret_value().startswith(("$6$", "$5$")):
                raise ValueError(f"{name}: expected a SHA-512 crypt hash ($6$...; openssl passwd -6)")
        return value


class Contact(Strict):
    """Where a person or team hears of alerts."""

    email: list[str] = []
    webhook: list[str] = []

    @field_validator("email")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for addr in value:
            if not re.match(r"^[^@\s]+@[^@\s]+$", addr):
                raise ValueError(f"{addr!r} is not an e-mail address")
        return value

    @field_validator("webhook")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
                # not echoed whole: a webhook's URL may carry a token
                raise ValueError(f"a webhook is an http:// or https:// URL (got one starting {url[:8]!r})")
        return value


class Smtp(Strict):
    host: str = ""
    port: int = Port
    sender: str = "bay@localhost"
    starttls: bool = False
    user: str = ""
    #: a file on the master holding the password (the password never travels in pillar reports)
    password_file: str = ""


class Alerts(Strict):
    """Alerts (docs/alerts.md): evaluated on the master (the ``bay_alerts``
    engine), routed to services' owners and to the platform team."""

    enabled: bool = True
    #: seconds between evaluation rounds
    interval: float = Field(gt=0)
    #: Alertmanager's timing: wait this long to group a new alert with others ...
    group_wait: float = Field(ge=0)
    #: ... tell a group again at most this often when what fires in it changed ...
    group_interval: float = Field(gt=0)
    #: ... and remind of alerts that keep firing this often
    repeat_interval: float = Field(gt=0)
    send_attempts: int = Field(ge=1)
    send_backoff_max: float = Field(gt=0)
    webhook_timeout: float = Field(gt=0)
    #: CA of https webhooks (empty: the system's)
    webhook_ca_file: str = ""
    #: contact names who get platform and server alerts
    platform_team: list[str] = []
    contacts: dict[str, Contact] = {}
    smtp: Smtp = Field(default_factory=Smtp)
    #: rule name -> changes to a default rule, or a rule of the site's own
    rules: dict[str, Any] = {}

    _d = field_validator("interval", "group_wait", "group_interval", "repeat_interval", "send_backoff_max",
                         mode="before")(classmethod(lambda cls, v: seconds(v)))

    @model_validator(mode="after")
    def _known(self) -> Alerts:
        from bay_salt.model.alert_rules import effective

        for name in self.platform_team:
            if name not in self.contacts:
                raise ValueError(f"platform_team: {name!r} has no entry in bay:alerts:contacts")
        try:
            effective(self.rules, {})
        except ValueError as err:
            raise ValueError(str(err).replace("bay:alerts:", "")) from None
        return self


class LogsArchive(Strict):
    """The archive of services' logs: a consumer group on the nodes with role
    ``kafka`` writing each log topic into HDFS, an hour per directory."""

    #: where it goes: ``hdfs://NAMENODE:WEBHDFS_PORT[,...]/PATH`` (empty: no archive)
    hdfs: str = ""
    #: the HDFS user the files belong to
    user: str = "bay"
    #: a file is closed (and its records' offsets committed) after this long or this size
    roll_seconds: float = Field(gt=0)
    roll_size: str = "64Mi"

    _d = field_validator("roll_seconds", mode="before")(classmethod(lambda cls, v: seconds(v)))

    @field_validator("hdfs")
    @classmethod
    def _hdfs(cls, value: str) -> str:
        if value and not re.match(r"^hdfs://[A-Za-z0-9.:,\[\]-]+/[A-Za-z0-9._/-]*$", value):
            raise ValueError(f"{value!r}: expected hdfs://NAMENODE:WEBHDFS_PORT/PATH")
        return value

    @field_validator("roll_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if data_bytes(value) <= 0:
            raise ValueError(f"{value!r}: a size above 0, like 64Mi")
        return value


class LogsSearch(Strict):
    """Logs you can search (docs/logs.md): the log indexer writes the log
    topics into a search store with the Elasticsearch bulk API; by default an
    OpenSearch server on each node with role ``kafka`` (on loopback, its own
    indexer), or a site's own Elasticsearch/OpenSearch at ``url``."""

    enabled: bool = True
    #: a site's own store (``https://HOST:9200``); empty: Bay's OpenSearch on the kafka nodes
    url: str = ""
    #: its login, if it has one (the password is a secret: kafka nodes only)
    user: str = ""
    password: Secret = SecretStr("")
    ca_file: str = ""
    #: a service's index of a day is deleted this long after the day
    retention: float = Field(gt=0)
    #: Bay's OpenSearch: its JVM heap, its HTTP port on loopback, where its jars and data go
    heap: str = "256m"
    port: int = Port
    lib_dir: str = "/opt/bay/search/lib"
    data_dir: str = "/var/lib/bay/search"

    _d = field_validator("retention", mode="before")(classmethod(lambda cls, v: seconds(v)))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._/-]*)?$", value):
            raise ValueError(f"{value!r}: expected http(s)://HOST:PORT")
        return value

    @field_validator("heap")
    @classmethod
    def _heap(cls, value: str) -> str:
        if not re.match(r"^[1-9][0-9]*[mg]$", value):
            raise ValueError(f"{value!r}: a JVM heap like 256m or 1g")
        return value


class Logs(Strict):
    """Containers' output on their node (kept after the container is gone,
    served over HTTPS) and services' logs through the node's relay into Kafka
    (docs/logs.md)."""

    enabled: bool = True
    #: kept output of removed containers, on each node
    dir: str = "/var/lib/bay/logs"
    #: kept output is removed after this long ...
    retention: float = Field(gt=0)
    #: ... and the oldest first while a node keeps more than this in all
    node_max_size: str = "1Gi"
    #: the last this much of each container's output is kept
    container_max_size: str = "10Mi"
    #: seconds between two clean-ups
    gc_interval: float = Field(gt=0)
    #: the node's log endpoint (HTTPS with the node's certificate, bearer tokens from the master)
    port: int = Port
    #: the relay: containers write log lines here (TCP, on the address containers reach their node at)
    relay_port: int = Port
    #: lines the relay holds while Kafka does not answer (the oldest are dropped beyond)
    relay_buffer: int = Field(ge=1000)
    #: containers' stdout and stderr into their service's topic too (label ``stream``), so output outlives its node
    ship_output: bool = True
    #: the public key (PEM) the nodes check tokens with; the master signs with its private key
    token_public_key: str = ""
    #: how long a token from ``bay.logs`` is good for (seconds)
    token_ttl: float = Field(gt=0)
    archive: LogsArchive = Field(default_factory=LogsArchive)
    search: LogsSearch = Field(default_factory=LogsSearch)

    _d = field_validator("retention", "gc_interval", "token_ttl", mode="before")(
        classmethod(lambda cls, v: seconds(v)))

    @field_validator("node_max_size", "container_max_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if data_bytes(value) <= 0:
            raise ValueError(f"{value!r}: a size above 0, like 10Mi or 1Gi")
        return value

    @field_validator("token_public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if value and "BEGIN PUBLIC KEY" not in value:
            raise ValueError("expected a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return value


class KafkaTLS(Strict):
    """TLS between Kafka and its clients (SASL_SSL): the CA the clients check
    the broker against; for Bay's own broker also the kafka node's
    certificate (naming its address) and key. Empty: SASL_PLAINTEXT."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @model_validator(mode="after")
    def _pair(self) -> KafkaTLS:
        if bool(self.cert_file) != bool(self.key_file) or (self.cert_file and not self.ca_file):
            raise ValueError("tls: give cert_file and key_file together, with ca_file")
        return self


class Kafka(Strict):
    """Apache Kafka (KRaft) on the nodes with role ``kafka``, or a site's own."""

    #: a site's own Kafka (HOST:PORT,...); empty: Bay's, on the nodes with role kafka
    bootstrap: str = ""
    #: Bay's broker: clients (SASL SCRAM) on the node's address; its controller on loopback
    port: int = Port
    controller_port: int = Port
    #: the one user Bay's components authenticate as (SCRAM-SHA-512), and its password (a secret)
    user: str = "bay"
    password: Secret = SecretStr("")
    #: where the jars are (the state fetches them with Maven when they are not there)
    lib_dir: str = "/opt/bay/kafka/lib"
    java_package: str = "openjdk-17-jre-headless"
    data_dir: str = "/var/lib/bay/kafka"
    heap: str = "256m"
    #: a new service's topic, unless its spec says otherwise
    partitions: int = Field(ge=1)
    retention: float = Field(gt=0)
    tls: KafkaTLS = Field(default_factory=KafkaTLS)

    _d = field_validator("retention", mode="before")(classmethod(lambda cls, v: seconds(v)))

    @model_validator(mode="after")
    def _own_broker_has_a_certificate(self) -> Kafka:
        if self.tls.ca_file and not self.bootstrap and not self.tls.cert_file:
            raise ValueError("tls: Bay's own broker needs cert_file and key_file (a certificate naming "
                             "the kafka node's address); a site's own Kafka (bootstrap) needs only ca_file")
        return self

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        if value and not re.match(r"^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$", value):
            raise ValueError(f"{value!r}: expected HOST:PORT[,HOST:PORT...]")
        return value


class Sandbox(Strict):
    """The service containers' sandbox on every node (bay_salt.node.sandbox)."""

    enabled: bool = True
    #: what every service container may reach beyond its node and its peers (a group adds its own ``egress``)
    egress: list[Egress] = []
    #: addresses or networks of the platform Bay does not know of by itself (never reachable from a container)
    platform: list[str] = []

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: list[str]) -> list[str]:
        for v in value:
            try:
                ipaddress.IPv4Network(v, strict=False)
            except ValueError:
                if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", v):
                    raise ValueError(f"{v!r} is not an IPv4 address, network or host name") from None
        return value


class Settings(Strict):
    cluster: str
    nodes: dict[str, Node]
    python: Python
    docker: Docker
    consul: Consul
    haproxy: HAProxy
    cadvisor: CAdvisor
    mesos: Mesos
    registry: Registry
    controller: Controller
    monitoring: Monitoring
    alerts: Alerts
    logs: Logs
    kafka: Kafka
    sandbox: Sandbox = Field(default_factory=Sandbox)
    # validated by bay_salt.services (errors name service.group and field)
    services: dict[str, Any] = {}
    #: the platform team: may deploy every service and do everything in the registry
    admins: list[str] = []
    #: team -> its people, for services whose owners name a team
    teams: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _servers_exist(self) -> Settings:
        for name in self.consul.servers:
            if name not in self.nodes:
                raise ValueError(f"consul:servers: {name!r} is not a node in bay:nodes")
        for name in self.consul.acl.node_tokens:
            if name not in self.nodes:
                raise ValueError(f"consul:acl:node_tokens: {name!r} is not a node in bay:nodes")
        addresses: dict[str, str] = {}
        for name, node in self.nodes.items():
            if node.address and node.address in addresses:
                raise ValueError(
                    f"nodes:{name}:address: {node.address} is already the address of {addresses[node.address]}"
                )
            if node.address:
                addresses[node.address] = name
        return self


def formula_defaults(root) -> dict:
    """The ``bay`` key of the formula's ``states/bay/defaults.yaml`` under checkout ``root``."""
    return read_defaults(f"{root}/states/bay/defaults.yaml")


def read_defaults(path) -> dict:
    """The ``bay`` key of a formula defaults file (``bay/defaults.yaml``)."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["bay"]


def pick_address(ip4_interfaces: dict[str, list[str]]) -> str | None:
    """The node's own address from Salt's ``ip4_interfaces`` grain: the first
    address of the first interface that is not loopback or a bridge Docker
    made (docker0, br-*, veth*)."""
    skip = ("lo", "docker", "br-", "veth")
    for iface in sorted(ip4_interfaces):
        if iface.startswith(skip):
            continue
        for addr in ip4_interfaces[iface]:
            if not addr.startswith("127."):
                return addr
    return None


def deep_merge(base: dict, override: dict | None) -> dict:
    """``override`` merged into a copy of ``base`` (Salt's own dictupdate: dicts
    merge, anything else replaces); neither argument is changed."""
    return salt.utils.dictupdate.update(copy.deepcopy(base), copy.deepcopy(override or {}))


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ":".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        key = f"bay:{loc}" if loc else "bay"
        # model-level errors carry their own key in the message ("consul:servers: ...")
        if not loc and ":" in msg.split(" ", 1)[0]:
            key, msg = "bay:" + msg.split(": ", 1)[0], msg.split(": ", 1)[1]
        lines.append(f"{key}: {msg}")
    return "invalid pillar: " + "; ".join(lines)


#: where loaded settings hold secrets (the services as declared in pillar, too)
SECRET_PATHS = secret_paths(Settings) + [("services", "*", *path) for path in secret_paths(Service)]


def redacted(data: dict) -> dict:
    """A copy of loaded settings with every secret (a :data:`~bay_salt.model.base.Secret` field
    of the settings or of a service) shown as ``<redacted>``."""
    return redact(data, SECRET_PATHS)


def load(defaults: dict, pillar: dict | None, minion_id: str | None = None, own_address: str | None = None) -> dict:
    """Merge ``pillar`` (the ``bay`` pillar value) over ``defaults`` (the ``bay``
    key of defaults.yaml), validate, and return the settings as plain data.

    With ``minion_id``, ``node`` holds that minion's own entry (address, roles,
    and whether it is a Consul server); ``own_address`` is its address when
    the pillar does not give one.
    """
    if pillar is not None and not isinstance(pillar, dict):
        raise SettingsError(f"invalid pillar: bay: must be a mapping, not {type(pillar).__name__}")
    merged = deep_merge(defaults, pillar or {})
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as err:
        raise SettingsError(_format_error(err)) from None
    data = settings.model_dump()
    data["registry"]["cache_bytes"] = settings.registry.cache_bytes
    m = data["monitoring"]

    m["interval"] = finest_seconds(m["retention"])
    m["nodes"] = sorted(n for n, v in data["nodes"].items() if "monitoring" in v["roles"])
    m["carbon_address"] = m["carbon"] or (
        f"{data['nodes'][m['nodes'][0]]['address']}:{m['carbon_port']}" if m["nodes"] and
        data["nodes"][m["nodes"][0]]["address"] else "")
    m["web_url"] = m["web"] or (
        f"https://{data['nodes'][m['nodes'][0]]['address']}:{m['web_port']}" if m["nodes"] and
        data["nodes"][m["nodes"][0]]["address"] else "")
    k = data["kafka"]
    k["nodes"] = sorted(n for n, v in data["nodes"].items() if "kafka" in v["roles"])
    k["bootstrap_servers"] = k["bootstrap"] or ",".join(
        f"{data['nodes'][n]['address']}:{k['port']}" for n in k["nodes"] if data["nodes"][n]["address"])
    lg = data["logs"]
    lg["node_max_bytes"] = data_bytes(lg["node_max_size"])
    lg["container_max_bytes"] = data_bytes(lg["container_max_size"])
    lg["archive"]["roll_bytes"] = data_bytes(lg["archive"]["roll_size"])
    if not data["consul"]["servers"] and data["nodes"]:
        data["consul"]["servers"] = [sorted(data["nodes"])[0]]
    data["consul"]["server_addresses"] = [
        data["nodes"][n]["address"] for n in data["consul"]["servers"] if data["nodes"][n]["address"]
    ]
    if minion_id is not None:
        own = data["nodes"].get(minion_id, {"address": None, "roles": ["worker"]})
        data["node"] = {
            "id": minion_id,
            "address": own["address"] or own_address,
            "roles": own["roles"],
            "consul_server": minion_id in data["consul"]["servers"],
        }
        acl = data["consul"]["acl"]
        if acl["enabled"]:
            # a server creates every role's token (bay.consul), so it needs them all
            need = list(ACL_ROLES) if data["node"]["consul_server"] else ["agent", "reader"] + (
                ["registry"] if "registry" in data["node"]["roles"] else [])
            if minion_id in acl["node_tokens"]:  # its own agent token: the shared one is not needed
                need.remove("agent")
            missing = [role for role in need if role not in acl["tokens"]]
            if missing:
                raise SettingsError(f"invalid pillar: bay:consul:acl:tokens:{missing[0]}: missing on {minion_id} "
                                    f"(Consul ACLs are on; this node needs the {', '.join(missing)} token"
                                    f"{'s' if len(missing) > 1 else ''}; or set bay:consul:acl:enabled false)")
        ra = data["registry"]["auth"]
        if ra["mode"] != "none":
            if "registry" in data["node"]["roles"] and not (ra["secret"] and ra["users"]):
                raise SettingsError(f"invalid pillar: bay:registry:auth:{'secret' if not ra['secret'] else 'users'}: "
                                    f"missing on {minion_id} (a registry node; the registry's auth is "
                                    f"{ra['mode']}; or set bay:registry:auth:mode none)")
            if data["docker"]["registry"] and not ra["node_password"]:
                raise SettingsError(f"invalid pillar: bay:registry:auth:node_password: missing on {minion_id} "
                                    "(its Docker pulls from the registry with it)")
        if data["logs"]["enabled"] and k["bootstrap_servers"] and not k["password"]:
            raise SettingsError(f"invalid pillar: bay:kafka:password: missing on {minion_id} "
                                "(its log relay writes to Kafka with it)")
    return data
