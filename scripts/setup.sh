#!/usr/bin/env bash
# Prepare this machine (Debian 12, as root) for Bay: system packages, a running
# Docker engine, and a venv with bay-salt installed from this checkout.
# `--test` adds what only the test suite and the benches use (scripts/test.sh
# passes it): Chromium, Debian's docker-registry, libcairo2, and the Go-built OCI
# clients and conformance suite. Idempotent: run it again any time. Progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${BAY_VENV:-$here/.venv}"
log_dir=/var/log/bay
mkdir -p "$log_dir"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
tests=false
for arg in "$@"; do
  case "$arg" in
    --test) tests=true ;;
    *) echo "setup.sh: unknown argument $arg (only --test: also what the tests need)" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs packages and starts dockerd)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
# what `bay up` needs: maven and a JDK (Hadoop's MiniDFSCluster and Kafka's jars, scripts/hdfs.sh
# and scripts/kafka.sh), debootstrap and busybox-static (the node and demo images), skopeo (pushes
# the demo), haproxy and consul (also run on the host by the integration tests), openssl
# (graphite-web's password hash)
packages=(docker.io debootstrap busybox-static skopeo python3-venv python3-pip haproxy iproute2 curl git tar
          maven openssl)
# what only the tests and benches need: docker-registry (the registry benchmark's reference; its
# service is not started), libcairo2 (graphite-web renders graphs with it: functional tests),
# chromium (the dashboards' browser test)
$tests && packages+=(docker-registry libcairo2 chromium)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# HDFS (MiniDFSCluster): scripts/hdfs/BayMiniDFS.java runs in source-file mode, which needs the JDK
command -v javac >/dev/null || missing+=(default-jdk-headless)
# statsd for the node image comes from npm (once; kept in Bay's cache)
command -v npm >/dev/null || missing+=(npm)

# Consul for the integration tests on the host: Debian bullseye's consul 1.8.7,
# from this machine's own mirror (the source is derived from its apt sources).
if ! command -v consul >/dev/null; then
  say "adding a low-pinned bullseye apt source for consul"
  PYTHONPATH="$here" python3 -m bay_salt.node.aptsources bullseye-source > /etc/apt/sources.list.d/bay-bullseye.sources
  PYTHONPATH="$here" python3 -c 'from bay_salt.node.aptsources import BULLSEYE_PIN; print(BULLSEYE_PIN, end="")' \
    > /etc/apt/preferences.d/bay-bullseye
  missing+=("consul/bullseye")
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  apt-get update -q >"$log_dir/apt-update.log" 2>&1
  apt-get install -y -q "${missing[@]}" >"$log_dir/apt-install.log" 2>&1 \
    || { tail -20 "$log_dir/apt-install.log" >&2; exit 1; }
fi
# Debian starts haproxy/consul services on install where systemd runs; Bay's tests
# start their own instances, so the packaged ones are not needed on the host.

if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    say "starting docker (systemd)"
    systemctl start docker
  else
    say "starting dockerd (no systemd here; log: $log_dir/dockerd.log)"
    nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "setup.sh: dockerd did not come up; see $log_dir/dockerd.log" >&2; exit 1; }
fi

if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.bay-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  say "pip install -e .[test,monitoring] (salt==3008.4, Graphite and friends; about 2 minutes the first time)"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  # Graphite's source packages stay inside the venv only with GRAPHITE_NO_PREFIX
  GRAPHITE_NO_PREFIX=True "$venv/bin/pip" install -q -e "$here[test,monitoring]" >"$log_dir/pip-install.log" 2>&1 \
    || { tail -20 "$log_dir/pip-install.log" >&2; echo "setup.sh: pip install failed; log: $log_dir/pip-install.log" >&2; exit 1; }
  touch "$stamp"
fi
ln -sf "$venv/bin/bay" /usr/local/bin/bay
if $tests; then
  # the Go-built test tools, once (cached in /var/cache/bay; a few minutes on 2 cores the first time)
  say "OCI clients and the conformance suite (built once)"
  bash "$here/scripts/oci-clients.sh" >/dev/null
  bash "$here/scripts/conformance.sh" >/dev/null
fi
say "ready: docker $(docker version --format '{{.Server.Version}}'), $("$venv/bin/python" -c 'import salt.version; print("salt", salt.version.__version__)')"
