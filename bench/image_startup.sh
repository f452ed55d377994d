#!/usr/bin/env bash
# Start-up of server images, interleaved: for each round and image, `docker run -d` on the host's
# network (SQLite, CLEANUP_ENABLED=false), then the seconds to the first `GET /healthz` 200 (curl
# every 0.1 s), the seconds until Docker says `healthy` (the image's own HEALTHCHECK), and the
# container's CPU seconds at the first 200 (its cgroup v1 cpuacct.usage). BENCHMARKS.md, "Deploy
# images", has the figures.
#
#   bench/image_startup.sh ROUNDS IMAGE...      e.g. bench/image_startup.sh 3 botfleet:dev
set -euo pipefail
rounds=${1:?rounds}
shift
[ $# -gt 0 ] || { echo "usage: $0 ROUNDS IMAGE..." >&2; exit 2; }
port=${PORT:-39117}
label=org.botfleet.bench=image-startup
cid=""
trap '[ -z "$cid" ] || docker rm -f "$cid" >/dev/null' EXIT

since() { echo "$(date +%s.%N) - $1" | bc; }

for round in $(seq "$rounds"); do
  for image in "$@"; do
    token=$(openssl rand -hex 24)
    start=$(date +%s.%N)
    cid=$(docker run -d --network host --label "$label" -e "PORT=$port" -e "ADMIN_TOKEN=$token" \
      -e CLEANUP_ENABLED=false "$image")
    first="" cpu=""
    while :; do
      if [ -z "$first" ] && curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; then
        first=$(since "$start")
        cpu=$(echo "$(cat "/sys/fs/cgroup/cpuacct/docker/$cid/cpuacct.usage") / 10^9" | bc -l)
      fi
      status=$(docker inspect -f '{{.State.Health.Status}}' "$cid")
      [ "$status" != healthy ] || break
      [ "$status" != unhealthy ] || { echo "$image: unhealthy" >&2; exit 1; }
      sleep 0.1
    done
    printf 'round %s  %s  first_200=%.1f s  healthy=%.1f s  cpu_to_first_200=%.2f s  load=%s\n' \
      "$round" "$image" "$first" "$(since "$start")" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)"
    docker rm -f "$cid" >/dev/null
    cid=""
  done
done
