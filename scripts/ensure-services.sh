#!/usr/bin/env bash
# Install (if missing), configure and start what the test suite needs: PostgreSQL 15 with trust
# authentication on loopback, a Docker Engine without the bridge network, busybox for the test
# image, promtool and Chromium. Idempotent: a running service is left as it is.
set -euo pipefail

log() { printf 'ensure-services: %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

want=()
command -v pg_ctlcluster >/dev/null && [ -d /usr/lib/postgresql/15 ] || want+=(postgresql-15)
command -v dockerd >/dev/null || want+=(docker.io)
[ -x /usr/bin/busybox ] || want+=(busybox-static)
command -v promtool >/dev/null || want+=(prometheus)
command -v chromium >/dev/null || want+=(chromium)
command -v curl >/dev/null || want+=(curl)
command -v docker-registry >/dev/null || want+=(docker-registry)
if [ ${#want[@]} -gt 0 ]; then
  log "installing ${want[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
fi

# --- PostgreSQL 15 on 127.0.0.1:5432, user postgres, trust on loopback --------------------
conf_dir=/etc/postgresql/15/main
if [ ! -d "$conf_dir" ]; then
  $SUDO pg_createcluster 15 main >/dev/null
fi
hba="$conf_dir/pg_hba.conf"
if ! grep -q '^# botfleet: trust on loopback' "$hba"; then
  log "configuring trust authentication on loopback in $hba"
  tmp=$(mktemp)
  {
    echo '# botfleet: trust on loopback (test and development machines only)'
    echo 'local   all all                trust'
    echo 'host    all all 127.0.0.1/32   trust'
    echo 'host    all all ::1/128        trust'
    grep -vE '^(local|host)' "$hba" || true
  } >"$tmp"
  $SUDO cp "$tmp" "$hba"
  rm -f "$tmp"
  if pg_lsclusters -h 2>/dev/null | awk '$1==15 && $2=="main" {print $4}' | grep -q online; then
    $SUDO pg_ctlcluster 15 main reload
  fi
fi
if ! grep -q '^max_connections = 300' "$conf_dir/postgresql.conf"; then
  # Several replicas, engines and benchmarks share one server in the tests.
  echo 'max_connections = 300' | $SUDO tee -a "$conf_dir/postgresql.conf" >/dev/null
  if pg_lsclusters -h | awk '$1==15 && $2=="main" {print $4}' | grep -q online; then
    $SUDO pg_ctlcluster 15 main restart
  fi
fi
if ! pg_lsclusters -h | awk '$1==15 && $2=="main" {print $4}' | grep -q online; then
  log "starting PostgreSQL 15"
  $SUDO pg_ctlcluster 15 main start
fi
for _ in $(seq 1 60); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.5
done
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { log "PostgreSQL did not become ready"; exit 1; }
psql -h 127.0.0.1 -U postgres -Atqc 'select 1' >/dev/null

# --- Docker Engine (no bridge network, no iptables) ----------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd --bridge=none --iptables=false --ip-masq=false \
    >/var/log/botfleet-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
docker info >/dev/null 2>&1 || { log "dockerd did not become ready; see /var/log/botfleet-dockerd.log"; exit 1; }

# --- A local image registry on 127.0.0.1:5000 (swarm nodes pull bot images from it) ---------
# Loopback registries need no TLS; nothing here ever talks to a public registry.
registry_up() { curl -fs -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/; }
if ! registry_up; then
  log "starting the local registry on 127.0.0.1:5000"
  reg=/var/lib/botfleet-registry
  mkdir -p "$reg/data"
  cat >"$reg/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $reg/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YAML
  nohup docker-registry serve "$reg/config.yml" >/var/log/botfleet-registry.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do registry_up && break; sleep 0.25; done
fi
registry_up || { log "the registry did not answer; see /var/log/botfleet-registry.log"; exit 1; }
log "PostgreSQL, Docker and the registry are ready"
