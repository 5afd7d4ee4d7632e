#!/bin/bash
# The jars of a real OpenSearch server (states/bay/files/search/pom.xml, the
# pom the bay.search state uses too), fetched from Maven once into
# /var/cache/bay (BAY_CACHE); prints the directory they are in.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
POM="$HERE/../states/bay/files/search/pom.xml"
VERSION=$(sed -n 's:.*<opensearch.version>\(.*\)</opensearch.version>.*:\1:p' "$POM")
LIB=${BAY_CACHE:-/var/cache/bay}/search/lib-$VERSION
if [ ! -f "$LIB/.complete" ]; then
    command -v mvn >/dev/null || { echo "search.sh: Maven (apt package maven) is needed to fetch OpenSearch's jars" >&2; exit 1; }
    echo "[search] fetching OpenSearch $VERSION jars into $LIB" >&2
    mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIB" >&2
    touch "$LIB/.complete"
fi
echo "$LIB"
