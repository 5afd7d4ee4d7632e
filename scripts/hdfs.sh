#!/bin/bash
# The jars of a real HDFS (Hadoop's MiniDFSCluster, scripts/hdfs/pom.xml),
# fetched from Maven once into /var/cache/bay; prints the classpath glob.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=$(sed -n 's:.*<hadoop.version>\(.*\)</hadoop.version>.*:\1:p' "$HERE/hdfs/pom.xml")
LIB=/var/cache/bay/hdfs/lib-$VERSION
if [ ! -f "$LIB/.complete" ]; then
    command -v mvn >/dev/null || { echo "hdfs.sh: Maven (apt package maven) is needed to fetch Hadoop's jars" >&2; exit 1; }
    echo "[hdfs] fetching Hadoop $VERSION MiniDFSCluster jars into $LIB" >&2
    mvn -q -B -f "$HERE/hdfs/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIB" >&2
    touch "$LIB/.complete"
fi
echo "$LIB/*"
