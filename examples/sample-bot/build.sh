#!/usr/bin/env bash
# Build the sample bot image from the host's static busybox: botfleet/sample-bot:latest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-botfleet/sample-bot:latest}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$here/bot.sh" "$ctx/"
cp /usr/bin/busybox "$ctx/busybox"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
