#!/bin/bash
# The jars of a real HDFS (Hadoop's MiniDFSCluster, scripts/hdfs/pom.xml),
# fetched from Maven once into /var/cache/bay; prints the classpath glob.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LIB=$(BAY_CACHE=/var/cache/bay bash "$HERE/maven-jars.sh" hdfs "$HERE/hdfs/pom.xml" hadoop.version)
echo "$LIB/*"
