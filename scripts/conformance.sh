#!/bin/bash
# Build the OCI distribution-spec conformance suite (Go, from the module
# proxy) once; print the path of the test binary. Cached in /var/cache/bay.
set -euo pipefail
VERSION=v0.0.0-20260831232431-97274622c111
OUT=/var/cache/bay/oci-conformance/$VERSION
BIN=$OUT/conformance.test
export PATH=$PATH:/usr/local/go/bin
if [ ! -x "$BIN" ]; then
    command -v go >/dev/null || { echo "conformance.sh: Go is needed to build the OCI conformance suite" >&2; exit 1; }
    mkdir -p "$OUT/src"
    cd "$OUT/src"
    [ -f go.mod ] || go mod init bay-oci-conformance >/dev/null 2>&1
    echo "[conformance] building github.com/opencontainers/distribution-spec/conformance@$VERSION" >&2
    go get "github.com/opencontainers/distribution-spec/conformance@$VERSION" >&2
    go test -c -o "$BIN.tmp" github.com/opencontainers/distribution-spec/conformance >&2
    mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
