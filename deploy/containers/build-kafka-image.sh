#!/usr/bin/env bash
# Builds the test Kafka image from the harness's cached jars: build-kafka-image.sh LIBS_DIR IMAGE.
# Only the jars the harness's finished download lists (libs.complete) go into the image. Skips
# the build when an image of the same inputs exists. Run as root, after `make podman`. Prints IMAGE.
set -euo pipefail

LIBS="$1"
IMAGE="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BASE_IMAGE="${HUB_BASE_IMAGE:-localhost/debian-bookworm:latest}"
MARKER="$(dirname "$LIBS")/libs.complete"
KAFKA_VERSION="${IMAGE##*:}"

if [ ! -f "$MARKER" ] || [ ! -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    echo "no complete Kafka $KAFKA_VERSION jars in $LIBS: run \`make kafka-jars\` first" >&2
    exit 1
fi

# What the image is made of: a change to any of these builds it again.
inputs="$( {
    podman image inspect --format '{{.Id}}' "$BASE_IMAGE"
    cat "$HERE/Containerfile.kafka" "$HERE/kafka-entrypoint.sh" "$HERE/kafka-class-archive.sh" \
        "$ROOT/deploy/kafka/log4j2.properties"
    while read -r jar; do sha1sum "$LIBS/$jar"; done < "$MARKER" | cut -c1-40
} | sha256sum | cut -c1-16)"

current="$(podman image inspect --format '{{index .Labels "aftersales-hub.kafka.inputs"}}' "$IMAGE" 2> /dev/null || true)"
if [ "$current" = "$inputs" ]; then
    echo "$IMAGE"
    exit 0
fi

previous="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2> /dev/null || true)"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir "$context/libs"
while read -r jar; do cp "$LIBS/$jar" "$context/libs/"; done < "$MARKER"
cp "$HERE/kafka-entrypoint.sh" "$HERE/kafka-class-archive.sh" "$ROOT/deploy/kafka/log4j2.properties" \
    "$context/"

podman build --quiet --file "$HERE/Containerfile.kafka" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "KAFKA_VERSION=$KAFKA_VERSION" \
    --build-arg "INPUTS=$inputs" --tag "$IMAGE" "$context" >&2
# The image this one replaces is left without a name: remove it rather than keep 600 MB around.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    podman rmi --no-prune "$previous" > /dev/null 2>&1 || true
fi
echo "$IMAGE"
