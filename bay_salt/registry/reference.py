"""The distribution spec's grammar for names, tags and digests, and the
manifest media types the registry stores. Every check raises the spec's
error for what it refuses."""

from __future__ import annotations

import hashlib
import re

from bay_salt.model.services import REPOSITORY_RE
from bay_salt.registry.errors import Code, RegistryError

NAME_RE = REPOSITORY_RE
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
UUID_RE = re.compile(r"^[a-f0-9]{32}$")
MAX_NAME = 255
MAX_MANIFEST = 4 << 20

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise RegistryError(400, Code.NAME_INVALID, "invalid repository name", {"name": name[:300]})
    return name


def check_digest(digest: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a valid digest."""
    if not DIGEST_RE.match(digest or ""):
        raise RegistryError(400, Code.DIGEST_INVALID, "invalid digest", {"digest": (digest or "")[:200]})
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise RegistryError(400, Code.MANIFEST_INVALID, "invalid tag", {"tag": tag[:200]})
    return tag


def check_uuid(uuid: str) -> str:
    if not UUID_RE.match(uuid):
        raise RegistryError(404, Code.BLOB_UPLOAD_UNKNOWN, "blob upload unknown", {"uuid": uuid[:100]})
    return uuid


def is_digest(reference: str) -> bool:
    return ":" in reference


def hasher(alg: str):
    return hashlib.new(alg)
