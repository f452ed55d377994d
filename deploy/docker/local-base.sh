#!/usr/bin/env bash
# Base images made here, from Debian's packages only, for machines that reach no public image
# registry: a minimal bookworm root filesystem (mmdebstrap --variant=apt) with the packages each
# image needs, imported with `docker import`.
#
#   deploy/docker/local-base.sh [python|python-build|postgres|prometheus|all]   (default: all)
#
#   botfleet-local/python:bookworm        python3 + python3-venv: BASE_IMAGE of deploy/docker/Dockerfile
#   botfleet-local/python-build:bookworm  the same + binutils (strip): its BUILD_IMAGE
#   botfleet-local/postgres:bookworm      Debian's postgresql-15: FROM of deploy/docker/postgres.Dockerfile
#   botfleet-local/prometheus:bookworm    Debian's prometheus: FROM of deploy/docker/prometheus.Dockerfile
#
# Cached: each image carries the hash of its recipe (this file and its package list) as a label,
# and is made again only when that recipe changes or the image is gone. Prints the tags it made
# or found. Needs root (or sudo) and mmdebstrap (scripts/ensure-deploy-tools.sh installs it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
SUITE=bookworm
LABEL=org.botfleet.local-base.recipe
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

packages_of() {
  case "$1" in
    # What the python:3.11-slim images carry besides Python: ca-certificates, netbase, tzdata.
    python) echo "python3,python3-venv,ca-certificates,netbase,tzdata" ;;
    # The server image's build stage strips the compiled extensions; the runtime never needs strip.
    python-build) echo "python3,python3-venv,ca-certificates,netbase,tzdata,binutils" ;;
    postgres) echo "postgresql-15" ;;
    prometheus) echo "prometheus,ca-certificates" ;;
    *) echo "local-base.sh: unknown image '$1' (python, python-build, postgres, prometheus or all)" >&2; exit 2 ;;
  esac
}

make_image() {
  local name=$1 packages tag recipe have old
  packages=$(packages_of "$name")
  tag="botfleet-local/$name:$SUITE"
  recipe=$( { sha256sum "$here/local-base.sh" | cut -c1-64; echo "$packages"; } | sha256sum | cut -c1-16)
  have=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$tag" 2>/dev/null || true)
  if [ "$have" = "$recipe" ]; then
    echo "$tag"
    return
  fi
  old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  printf 'local-base: building %s from Debian %s (%s)\n' "$tag" "$SUITE" "$packages" >&2
  # Documentation, manual pages and translations are left out: nothing in a container reads them.
  # merged-usr by the hook, not by the usrmerge package (which would bring perl along).
  $SUDO mmdebstrap --quiet --variant=apt --mode=auto --include="$packages" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log' \
    "$SUITE" - |
    docker import \
      --change "LABEL $LABEL=$recipe" \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      - "$tag" >/dev/null
  # The image this one replaces, now untagged (kept if a container still uses it).
  [ -z "$old" ] || docker rmi "$old" >/dev/null 2>&1 || true
  echo "$tag"
}

target=${1:-all}
if [ "$target" = all ]; then
  for name in python python-build postgres prometheus; do make_image "$name"; done
else
  make_image "$target"
fi
