"""The demo service `bay up` deploys: images built here from busybox-static
(no image can be pulled), pushed to the cluster's registry with skopeo."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

from bay_salt.cluster.progress import Progress

HERE = Path(__file__).parent
BUSYBOX_IMAGE = "bay-busybox:latest"
DEMO_IMAGE = "bay-demo"
VERSIONS = ("1", "2")
REPOSITORY = "bay/demo"


def ensure_busybox(client, progress: Progress) -> None:
    if client.images.list(name=BUSYBOX_IMAGE):
        return
    busybox = shutil.which("busybox") or "/bin/busybox"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    with progress.step("busybox base image"):
        client.api.import_image_from_data(buf.getvalue(), repository="bay-busybox", tag="latest")


def ensure_images(client, progress: Progress) -> list[str]:
    """Local demo images, one tag per version (Docker's cache makes reruns free)."""
    ensure_busybox(client, progress)
    tags = []
    with progress.step("demo images"):
        for v in VERSIONS:
            tag = f"{DEMO_IMAGE}:{v}"
            for chunk in client.api.build(path=str(HERE), tag=tag, buildargs={"VERSION": v}, rm=True, decode=True):
                if "error" in chunk:
                    raise RuntimeError(f"building {tag} failed: {chunk['error'].strip()}")
            tags.append(tag)
    return tags


def push(registry: str, progress: Progress, pull_as: str | None = None,
         login: tuple[str, str, Path] | None = None) -> dict[str, str]:
    """Copy the demo images into ``registry`` (host:port); ``login``: (user,
    password, a directory with the CA as ca.crt) for a registry behind TLS
    and authentication (else plain HTTP). Returns version -> image reference
    as nodes pull it (``pull_as``: the registry's address from the nodes, if
    it differs)."""
    refs = {}
    dest = (["--dest-creds", f"{login[0]}:{login[1]}", "--dest-cert-dir", str(login[2])] if login
            else ["--dest-tls-verify=false"])
    for v in VERSIONS:
        ref = f"{registry}/{REPOSITORY}:{v}"
        progress.run(["skopeo", "copy", "--quiet", *dest, f"docker-daemon:{DEMO_IMAGE}:{v}", f"docker://{ref}"],
                     f"push {ref}")
        refs[v] = f"{pull_as or registry}/{REPOSITORY}:{v}"
    return refs


def services_pillar(refs: dict[str, str]) -> dict:
    """The demo service: two groups, each its own frontend on every node."""
    health = {"http": "/healthz", "interval": "1s", "timeout": "500ms", "rise": 1, "fall": 2, "start_period": "30s"}
    # hung (answers nothing, exits nowhere): replaced after 3 failed checks a second apart
    liveness = {"http": "/healthz", "interval": "1s", "timeout": "500ms", "failure_threshold": 3}
    return {"bay": {"services": {"demo": {
        "image": refs["1"],
        "owners": ["platform-team"],
        "health": health,
        "liveness": liveness,
        "max_surge": 1,
        "groups": {
            "web": {"instances": 3, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": 10080},
            "api": {"instances": 2, "cpu": 0.1, "memory": "32Mi", "port": 8000, "listen": 10081},
        },
    }}}}
