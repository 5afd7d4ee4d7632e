"""Images for the local cluster, built here (no image can be pulled).

* base: a debootstrapped Debian bookworm (minbase + systemd + python3),
  imported once and kept as the cache;
* wheelhouse: wheels of Salt and Bay's dependencies, built on the host once
  per dependency set, so nodes install Python packages offline;
* node: base + a venv running Salt + bay_salt + systemd units for
  salt-minion and salt-master. Docker's layer cache makes rebuilding after a
  code change cost one small layer.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

from bay_salt.cluster.progress import Progress
from bay_salt.cluster.sitefiles import PAM_PYTHON, pam_python_script
from bay_salt.node import aptsources
from bay_salt.node import nodefiles as nodeconf

SUITE = "bookworm"
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2",
    "ca-certificates", "procps", "curl", "gnupg", "iptables", "nftables", "conntrack", "less",
)
VENV = "/opt/bay/venv"
WHEELHOUSE = "/opt/bay/wheelhouse"
NODE_IMAGE = "bay-node"
LABEL_KIND = "io.bay.image"


def cache_dir() -> Path:
    path = Path(os.environ.get("BAY_CACHE", "/var/cache/bay"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def checkout_root() -> Path:
    """The source checkout bay_salt runs from (states/ and modules/ live there)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "states" / "bay").is_dir() or not (root / "pyproject.toml").is_file():
        raise RuntimeError(
            f"{root} is not a bay-salt checkout; install bay-salt editable from a checkout "
            "(pip install -e .) so `bay up` can serve its states/ and modules/"
        )
    return root


def runtime_requirements() -> list[str]:
    """bay-salt's own runtime dependencies, as the checkout's pyproject.toml
    declares them now (not the installed metadata, which a pip build of the
    checkout may refresh halfway through a `bay up`)."""
    project = tomllib.loads((checkout_root() / "pyproject.toml").read_text())["project"]
    return sorted(r.split(";")[0].strip() for r in project["dependencies"])


def monitoring_requirements() -> list[str]:
    """Graphite's packages (pyproject's ``monitoring`` extra), for the monitoring node's venv."""
    project = tomllib.loads((checkout_root() / "pyproject.toml").read_text())["project"]
    return sorted(project["optional-dependencies"]["monitoring"])


def base_image_tag() -> str:
    return f"bay-base:{SUITE}-{_digest(SUITE, *BASE_PACKAGES)}"


def ensure_base_image(client, progress: Progress) -> str:
    """Debootstrap and import the base image unless it is already there."""
    tag = base_image_tag()
    if client.images.list(name=tag):
        progress.note(f"base image {tag} (cached)")
        return tag
    mirror = aptsources.debian_mirror(aptsources.read_sources(), SUITE)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), mirror]
        progress.run(cmd, f"debootstrap {SUITE} (about a minute)")
        # the node's apt sources name the same mirror, in deb822 form
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            aptsources.deb822_source(mirror, f"{SUITE} {SUITE}-updates")
        )
        with progress.step(f"import {tag}"):
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(
                ["docker", "import", "--change", f"LABEL {LABEL_KIND}=base", "-", tag],
                stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL,
            )
            if tar.wait() != 0:
                raise RuntimeError("tar of the debootstrapped rootfs failed")
    return tag


def ensure_wheelhouse(progress: Progress) -> Path:
    """Wheels of the runtime requirements and Graphite's, built once per requirement set."""
    reqs = runtime_requirements() + monitoring_requirements()
    path = cache_dir() / f"wheelhouse-{_digest(sys.version.split()[0][:4], *reqs)}"
    if (path / ".complete").exists():
        progress.note(f"wheelhouse {path.name} (cached)")
        return path
    path.mkdir(exist_ok=True)
    # Graphite's source packages install into the venv only with GRAPHITE_NO_PREFIX
    progress.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(path), *reqs],
                 "wheelhouse for Salt, Bay's dependencies and Graphite", env=dict(os.environ, GRAPHITE_NO_PREFIX="True"))
    (path / ".complete").write_text("\n".join(reqs) + "\n")
    return path


def ensure_statsd(progress: Progress) -> Path:
    """statsd (npm), installed once into the cache; the node image carries it
    (``bay.metrics`` installs it from npm where it is not there already)."""
    from bay_salt.metrics.nodefiles import STATSD_VERSION

    path = cache_dir() / f"statsd-{STATSD_VERSION}"
    if (path / "node_modules/statsd/stats.js").exists():
        progress.note(f"statsd {STATSD_VERSION} (cached)")
        return path
    if not shutil.which("npm"):
        raise RuntimeError("npm is needed once to fetch statsd for the node image: bash scripts/setup.sh installs it")
    progress.run(["npm", "install", "--prefix", str(path), "--omit=optional", "--no-audit", "--no-fund",
                  f"statsd@{STATSD_VERSION}"], f"statsd {STATSD_VERSION} from npm")
    return path


def build_bay_wheel(progress: Progress) -> Path:
    """A reproducible wheel of this checkout (same sources, same bytes)."""
    root = checkout_root()
    out = cache_dir() / "dist"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
    with tempfile.TemporaryDirectory() as build:
        progress.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(root)],
            "wheel of bay-salt", env=env, cwd=build,
        )
    (wheel,) = out.glob("bay_salt-*.whl")
    return wheel


def _dockerfile(base: str, reqs: list[str]) -> str:
    quoted = " ".join(f"'{r}'" for r in reqs)
    return f"""FROM {base}
ENV DEBIAN_FRONTEND=noninteractive container=docker
COPY wheelhouse {WHEELHOUSE}
RUN python3 -m venv {VENV} && {VENV}/bin/pip install -q --no-index --find-links {WHEELHOUSE} {quoted}
COPY rootfs/ /
RUN systemctl mask systemd-udevd.service systemd-udev-trigger.service getty.target \\
 && systemctl enable salt-minion.service salt-master.service \\
 && mkdir -p /etc/salt/pki/minion /etc/salt/pki/master /etc/salt/minion.d /etc/salt/master.d /var/log/salt
COPY dist {'/opt/bay/dist'}
RUN {VENV}/bin/pip install -q --no-index --no-deps --force-reinstall /opt/bay/dist/*.whl
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""


def ensure_node_image(client, progress: Progress) -> str:
    """Build (through Docker's layer cache) the node image; returns its tag."""
    base = ensure_base_image(client, progress)
    wheelhouse = ensure_wheelhouse(progress)
    statsd = ensure_statsd(progress)
    wheel = build_bay_wheel(progress)
    reqs = runtime_requirements()
    tag = f"{NODE_IMAGE}:latest"
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="ctx-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(wheelhouse, ctx / "wheelhouse", copy_function=os.link, ignore=shutil.ignore_patterns(".complete"))
        shutil.copytree(statsd, ctx / "rootfs/opt/bay/statsd", symlinks=True)
        (ctx / "dist").mkdir()
        shutil.copy(wheel, ctx / "dist" / wheel.name)
        units = ctx / "rootfs/etc/systemd/system"
        units.mkdir(parents=True)
        for what in ("minion", "master"):
            (units / f"salt-{what}.service").write_text(nodeconf.salt_unit(what, VENV))
        bindir = ctx / "rootfs/usr/local/bin"
        bindir.mkdir(parents=True)
        for tool in ("salt", "salt-call", "salt-key", "salt-run"):
            (bindir / tool).symlink_to(f"{VENV}/bin/{tool}")
        (bindir / Path(PAM_PYTHON).name).write_text(pam_python_script(VENV))
        (bindir / Path(PAM_PYTHON).name).chmod(0o755)
        (ctx / "Dockerfile").write_text(_dockerfile(base, reqs))
        with progress.step("node image (cached layers are reused)"):
            for chunk in client.api.build(path=str(ctx), tag=tag, rm=True, decode=True, labels={LABEL_KIND: "node"}):
                if "error" in chunk:
                    raise RuntimeError(f"building the node image failed: {chunk['error'].strip()}")
                if "stream" in chunk and chunk["stream"].strip():
                    progress.detail(chunk["stream"].strip())
    return tag


def tar_files(files: dict[str, tuple[str | bytes, int]]) -> bytes:
    """A tar archive of ``{path: (content, mode)}`` for ``put_archive`` at ``/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (content, mode) in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
