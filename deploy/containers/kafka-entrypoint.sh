#!/bin/bash
# Starts the node once its configuration is in place. The advertised listener must name the
# port the host mapped, which is known only after the container started: whoever started it
# writes server.properties (and format.args, one StorageTool argument a line), then `start`.
set -euo pipefail

CONFIG_DIR="${KAFKA_CONFIG_DIR:-/var/lib/kafka/config}"
WAIT_S="${KAFKA_CONFIG_WAIT_S:-120}"
LOG4J="-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
CLASSPATH="/opt/kafka/libs/*"

for ((tenths = 0; tenths < WAIT_S * 10; tenths++)); do
    [ -f "$CONFIG_DIR/start" ] && break
    sleep 0.1
done
if [ ! -f "$CONFIG_DIR/start" ]; then
    echo "no configuration in $CONFIG_DIR after ${WAIT_S}s (write server.properties, then start)" >&2
    exit 2
fi

# The class-data archive the build wrote, when it wrote one (kafka-class-archive.sh).
if [ -f /opt/kafka/classes.jsa ]; then
    CDS="-XX:SharedArchiveFile=/opt/kafka/classes.jsa -Xlog:cds=off -Xlog:cds+dynamic=off"
    KAFKA_TOOL_JVM_OPTS="$KAFKA_TOOL_JVM_OPTS $CDS"
    KAFKA_JVM_OPTS="$KAFKA_JVM_OPTS $CDS"
fi

format_args=()
if [ -f "$CONFIG_DIR/format.args" ]; then
    mapfile -t format_args < "$CONFIG_DIR/format.args"
fi
# shellcheck disable=SC2086 # the JVM options are a list of words
java $KAFKA_TOOL_JVM_OPTS "$LOG4J" -cp "$CLASSPATH" kafka.tools.StorageTool format \
    --config "$CONFIG_DIR/server.properties" --ignore-formatted "${format_args[@]}"
# shellcheck disable=SC2086
exec java $KAFKA_JVM_OPTS "$LOG4J" -cp "$CLASSPATH" kafka.Kafka "$CONFIG_DIR/server.properties"
