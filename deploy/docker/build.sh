#!/usr/bin/env bash
# Build botfleet's images; prints the tag of each.
#
#   deploy/docker/build.sh server [TAG]       the server (deploy/docker/Dockerfile), botfleet:dev
#   deploy/docker/build.sh postgres [TAG]     PostgreSQL 15 from Debian, botfleet-local/postgres-server:15
#   deploy/docker/build.sh prometheus [TAG]   Prometheus from Debian, botfleet-local/prometheus-server:bookworm
#
# BASE_IMAGE=local (the default here) builds on the local Debian base (deploy/docker/local-base.sh),
# its build stage on the same base with binutils, with wheels built on the host;
# BASE_IMAGE=python:3.11-slim (or any other) builds on that image and lets its build stage fetch
# the wheels (and binutils).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/deploy/docker"
what=${1:-server}
base=${BASE_IMAGE:-local}

# The image a new build replaces becomes untagged: remove it at the end (kept if still in use).
replaced() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
drop() { [ -z "$1" ] || [ "$1" = "$(replaced "$2")" ] || docker rmi "$1" >/dev/null 2>&1 || true; }

case "$what" in
  server)
    tag=${2:-botfleet:dev}
    old=$(replaced "$tag")
    rm -rf "$root/.wheels"
    build_args=()
    if [ "$base" = local ]; then
      base=$(bash "$here/local-base.sh" python)
      build_args=(--build-arg "BUILD_IMAGE=$(bash "$here/local-base.sh" python-build)")
      bash "$here/wheels.sh" >/dev/null
    fi
    revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
    source=$(git -C "$root" remote get-url origin 2>/dev/null || echo "")
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml")
    docker build -q -f "$here/Dockerfile" -t "$tag" \
      --build-arg "BASE_IMAGE=$base" "${build_args[@]}" --build-arg "VERSION=$version" \
      --build-arg "REVISION=$revision" --build-arg "SOURCE=$source" \
      "$root" >/dev/null
    rm -rf "$root/.wheels"
    # The build stage's own image, untagged (the legacy builder keeps it): not worth keeping.
    docker image prune -f --filter label=org.botfleet.stage=build >/dev/null
    drop "$old" "$tag"
    ;;
  postgres | prometheus)
    if [ "$what" = postgres ]; then tag=${2:-botfleet-local/postgres-server:15}; else tag=${2:-botfleet-local/prometheus-server:bookworm}; fi
    from=$(bash "$here/local-base.sh" "$what")
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT
    cp "$here/$what.Dockerfile" "$here/$what-entrypoint.sh" "$ctx/"
    old=$(replaced "$tag")
    docker build -q -f "$ctx/$what.Dockerfile" -t "$tag" --build-arg "BASE_IMAGE=$from" "$ctx" >/dev/null
    drop "$old" "$tag"
    ;;
  *)
    echo "build.sh: unknown image '$what' (server, postgres or prometheus)" >&2
    exit 2
    ;;
esac
echo "$tag"
