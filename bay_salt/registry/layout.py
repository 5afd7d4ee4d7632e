"""Where everything lives in storage; every path is built here from
validated names and digests (and the storage driver checks it once more)::

    blobs/ALG/HEX/data                                   content, by digest
    repositories/NAME/_layers/ALG/HEX                    the blob is in NAME (mtime: last use)
    repositories/NAME/_manifests/revisions/ALG/HEX       {"mediaType": ...} of a manifest in NAME
    repositories/NAME/_manifests/tags/TAG                digest the tag points at
    repositories/NAME/_referrers/ALG-HEX/ALG-HEX         descriptor of a manifest whose subject is the first
    repositories/NAME/_uploads/UUID/data                 an upload in progress (any instance may continue it)
    repositories/NAME/_uploads/UUID/sum                  "SIZE sha256:HEX" of its first chunk, hashed as it came
"""

from __future__ import annotations

from bay_salt.registry.reference import check_digest, check_name, check_tag, check_uuid

REPOSITORIES = "repositories"
BLOBS = "blobs"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{check_name(name)}"


def blob_dir(digest: str) -> str:
    alg, h = check_digest(digest)
    return f"{BLOBS}/{alg}/{h}"


def blob(digest: str) -> str:
    return f"{blob_dir(digest)}/data"


def layers(name: str) -> str:
    return f"{repository(name)}/_layers"


def layer(name: str, digest: str) -> str:
    alg, h = check_digest(digest)
    return f"{layers(name)}/{alg}/{h}"


def revisions(name: str) -> str:
    return f"{repository(name)}/_manifests/revisions"


def revision(name: str, digest: str) -> str:
    alg, h = check_digest(digest)
    return f"{revisions(name)}/{alg}/{h}"


def tags(name: str) -> str:
    return f"{repository(name)}/_manifests/tags"


def tag(name: str, tag_: str) -> str:
    return f"{tags(name)}/{check_tag(tag_)}"


def uploads(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload_dir(name: str, uuid: str) -> str:
    return f"{uploads(name)}/{check_uuid(uuid)}"


def upload(name: str, uuid: str) -> str:
    return f"{upload_dir(name, uuid)}/data"


def upload_sum(name: str, uuid: str) -> str:
    return f"{upload_dir(name, uuid)}/sum"


def referrers(name: str, subject: str) -> str:
    check_digest(subject)
    return f"{repository(name)}/_referrers/{subject.replace(':', '-')}"


def referrer(name: str, subject: str, digest: str) -> str:
    check_digest(digest)
    return f"{referrers(name, subject)}/{digest.replace(':', '-')}"
