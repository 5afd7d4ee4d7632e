#!/bin/bash
# The jars of a real OpenSearch server (states/bay/files/search/pom.xml, the
# pom the bay.kafka state's search part uses too), fetched from Maven once
# into /var/cache/bay (BAY_CACHE); prints the directory they are in.
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/maven-jars.sh" search "$HERE/../states/bay/files/search/pom.xml" opensearch.version
