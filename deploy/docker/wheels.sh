#!/usr/bin/env bash
# Wheels of botfleet and of every dependency, built on the host into .wheels/ of the repository,
# so that deploy/docker/Dockerfile installs them offline (pip install --no-index). The host's
# Python must be the one of the image (3.11 on bookworm), so that compiled wheels fit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PY:-$root/.venv/bin/python}
rm -rf "$root/.wheels"
mkdir -p "$root/.wheels"
"$py" -m pip wheel -q --disable-pip-version-check --wheel-dir "$root/.wheels" "$root" >&2
ls "$root/.wheels" | grep -q '^botfleet-' || { echo "wheels.sh: no botfleet wheel built" >&2; exit 1; }
echo "$root/.wheels"
