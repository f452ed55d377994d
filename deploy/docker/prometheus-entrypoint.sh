#!/bin/sh
# Run Prometheus on the shipped configuration (deploy/prometheus, mounted at
# PROMETHEUS_CONFIG_DIR) with its scrape target, 127.0.0.1:3001, replaced by BOTFLEET_TARGETS
# (comma-separated host:port, one per replica). The alert rules are the shipped alerts.yml. With
# METRICS_TOKEN set, the scrape sends it (the shipped file's commented authorization block).
set -eu
conf=/tmp/prometheus
mkdir -p "$conf"
cp "$PROMETHEUS_CONFIG_DIR/alerts.yml" "$conf/alerts.yml"
token=${METRICS_TOKEN:-}
if [ -n "$token" ]; then
  (umask 077 && printf '%s' "$token" >"$conf/botfleet-metrics-token")
fi
awk -v targets="$BOTFLEET_TARGETS" -v token="$token" -v tokenfile="$conf/botfleet-metrics-token" '
  token != "" && /^ *# (authorization:|  type: Bearer|  credentials_file:)/ {
    sub(/# /, "")
    sub(/credentials_file: .*/, "credentials_file: " tokenfile)
  }
  /^ *- 127\.0\.0\.1:3001$/ {
    indent = substr($0, 1, index($0, "-") - 1)
    n = split(targets, each, ",")
    for (i = 1; i <= n; i++) print indent "- " each[i]
    next
  }
  { print }' "$PROMETHEUS_CONFIG_DIR/prometheus.yml" >"$conf/prometheus.yml"
promtool check config "$conf/prometheus.yml" >&2
exec prometheus --config.file="$conf/prometheus.yml" --storage.tsdb.path=/prometheus \
  --web.listen-address="$PROMETHEUS_LISTEN" "$@"
