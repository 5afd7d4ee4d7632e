#!/bin/bash
# Build the third-party OCI clients the registry tests run (crane, regctl,
# oras; Go, from the module proxy) once; print the directory that holds them.
# Cached in /var/cache/bay: a few minutes on 2 cores the first time only.
set -euo pipefail
CLIENTS=(
  "crane github.com/google/go-containerregistry/cmd/crane@v0.22.1"
  "regctl github.com/regclient/regclient/cmd/regctl@v0.11.7"
  "oras oras.land/oras/cmd/oras@v1.3.6"
)
OUT=/var/cache/bay/oci-clients/$(printf '%s\n' "${CLIENTS[@]}" | sha256sum | cut -c1-12)
export PATH=$PATH:/usr/local/go/bin
mkdir -p "$OUT"
for entry in "${CLIENTS[@]}"; do
  read -r name module <<<"$entry"
  [ -x "$OUT/$name" ] && continue
  command -v go >/dev/null || { echo "oci-clients.sh: Go is needed to build $name" >&2; exit 1; }
  echo "[oci-clients] go install $module" >&2
  GOBIN="$OUT/.build" go install "$module" >&2
  mv "$OUT/.build/$name" "$OUT/$name"
done
echo "$OUT"
