#!/usr/bin/env bash
# Install (if missing) what the deploy files and their tests need, all from Debian's packages:
# mmdebstrap (the local base images), docker-compose 1.29 (the compose stack), systemd
# (systemd-analyze verify), prometheus (the Prometheus image). Idempotent.
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
want=()
command -v mmdebstrap >/dev/null || want+=(mmdebstrap)
command -v docker-compose >/dev/null || want+=(docker-compose)
command -v systemd-analyze >/dev/null || want+=(systemd)
command -v promtool >/dev/null || want+=(prometheus)
if [ ${#want[@]} -gt 0 ]; then
  printf 'ensure-deploy-tools: installing %s\n' "${want[*]}" >&2
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
fi
