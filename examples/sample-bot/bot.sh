#!/bin/sh
# Posts a result to the main server every RESULT_INTERVAL_SECONDS with busybox wget.
# botfleet gives every bot container BOT_ID, BOT_TOKEN and MAIN_SERVER_URL.
n=0
while true; do
  n=$((n + 1))
  wget -q -O /dev/null \
    --header "Authorization: Bearer ${BOT_TOKEN}" \
    --header "Content-Type: application/json" \
    --post-data "{\"data\": {\"seq\": ${n}, \"uptime\": \"$(cut -d' ' -f1 /proc/uptime)\"}}" \
    "${MAIN_SERVER_URL}/bots/${BOT_ID}/results" && echo "posted result ${n}" \
    || echo "post ${n} failed" >&2
  sleep "${RESULT_INTERVAL_SECONDS}"
done
