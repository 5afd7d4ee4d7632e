#!/bin/bash
# maven-jars.sh NAME POM VERSION-PROPERTY: the jars POM depends on, fetched
# from Maven once into /var/cache/bay/NAME/lib-VERSION (BAY_CACHE); prints
# that directory. kafka.sh, search.sh and hdfs.sh are this for their pom.
set -euo pipefail
NAME=$1 POM=$2 PROPERTY=$3
VERSION=$(sed -n "s:.*<$PROPERTY>\(.*\)</$PROPERTY>.*:\1:p" "$POM")
LIB=${BAY_CACHE:-/var/cache/bay}/$NAME/lib-$VERSION
if [ ! -f "$LIB/.complete" ]; then
    command -v mvn >/dev/null || { echo "$NAME: Maven (apt package maven) is needed to fetch its jars" >&2; exit 1; }
    echo "[$NAME] fetching $PROPERTY $VERSION jars into $LIB" >&2
    mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIB" >&2
    touch "$LIB/.complete"
fi
echo "$LIB"
