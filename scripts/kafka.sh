#!/bin/bash
# The jars of a real Kafka (states/bay/files/kafka/pom.xml, the pom the
# bay.kafka state uses too), fetched from Maven once into /var/cache/bay
# (BAY_CACHE); prints the directory they are in.
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/maven-jars.sh" kafka "$HERE/../states/bay/files/kafka/pom.xml" kafka.version
