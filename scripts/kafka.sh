#!/bin/bash
# The jars of a real Kafka (states/bay/files/kafka/pom.xml, the pom the
# bay.kafka state uses too), fetched from Maven once into /var/cache/bay
# (BAY_CACHE); prints the directory they are in.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
POM="$HERE/../states/bay/files/kafka/pom.xml"
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
LIB=${BAY_CACHE:-/var/cache/bay}/kafka/lib-$VERSION
if [ ! -f "$LIB/.complete" ]; then
    command -v mvn >/dev/null || { echo "kafka.sh: Maven (apt package maven) is needed to fetch Kafka's jars" >&2; exit 1; }
    echo "[kafka] fetching Kafka $VERSION jars into $LIB" >&2
    mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIB" >&2
    touch "$LIB/.complete"
fi
echo "$LIB"
