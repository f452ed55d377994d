#!/usr/bin/env bash
# monitor-cleanup.sh — watch and drive botfleet's cleanup service from a terminal.
#
#   scripts/monitor-cleanup.sh                  interactive menu
#   scripts/monitor-cleanup.sh status           scheduler and service state, last run
#   scripts/monitor-cleanup.sh orphans          what is orphaned right now, per kind
#   scripts/monitor-cleanup.sh dry-run          plan a cleanup, delete nothing
#   scripts/monitor-cleanup.sh cleanup [--yes]  plan, confirm, then apply exactly that plan
#
# Environment: MAIN_SERVER_URL (default http://localhost:3001), ADMIN_TOKEN (required),
# MONITOR_TIMEOUT (seconds a cleanup may take, default 900).
#
# Exit codes: 0 done; 1 the run finished partial or failed; 2 usage or setup error;
# 3 server unreachable; 4 token refused (401/403/429); 5 unexpected server answer;
# 6 another cleanup is running; 7 cancelled at the confirmation, nothing deleted.
#
# Needs bash, curl and python3 (for JSON). The token never appears on a command line.
set -uo pipefail

SERVER="${MAIN_SERVER_URL:-http://localhost:3001}"
SERVER="${SERVER%/}"
TIMEOUT="${MONITOR_TIMEOUT:-900}"
EXIT_OK=0 EXIT_RUN=1 EXIT_USAGE=2 EXIT_UNREACHABLE=3 EXIT_AUTH=4 EXIT_SERVER=5 EXIT_BUSY=6
EXIT_CANCELLED=7

BODY="" # the last answer's body (JSON)

say() { printf '%s\n' "$*"; }
err() { printf 'monitor-cleanup: %s\n' "$*" >&2; }

usage() {
  cat <<'EOF'
usage: monitor-cleanup.sh [status | orphans | dry-run | cleanup [--yes] | help]
  no argument: interactive menu
  MAIN_SERVER_URL  server base URL (default http://localhost:3001)
  ADMIN_TOKEN      the server's admin bearer token (required)
exit codes: 0 ok, 1 run partial/failed, 2 usage, 3 unreachable, 4 token refused,
            5 unexpected answer, 6 cleanup already running, 7 cancelled
EOF
}

preflight() {
  local tool
  for tool in curl python3; do
    command -v "$tool" >/dev/null 2>&1 || { err "$tool is required but not installed"; return $EXIT_USAGE; }
  done
  if [ -z "${ADMIN_TOKEN:-}" ]; then
    err "ADMIN_TOKEN is not set: export the server's admin token first"
    return $EXIT_USAGE
  fi
}

# api METHOD PATH [max-seconds] — sets BODY; returns an exit code from the table above.
api() {
  local method="$1" path="$2" max="${3:-30}" out code status
  out="$(mktemp)"
  # The header comes from a file descriptor, so the token is not visible in `ps`.
  status="$(curl -sS -X "$method" -o "$out" -w '%{http_code}' \
    --connect-timeout 5 --max-time "$max" \
    -H @<(printf 'Authorization: Bearer %s\nAccept: application/json\n' "$ADMIN_TOKEN") \
    "$SERVER$path" 2>"$out.err")"
  code=$?
  BODY="$(cat "$out")"
  local curl_error
  curl_error="$(sed 's/^curl: ([0-9]*) //' "$out.err" | head -n 1)"
  rm -f "$out" "$out.err"
  if [ $code -ne 0 ]; then
    case $code in
      6 | 7) err "cannot reach the botfleet server at $SERVER ($curl_error)."
             err "Is it running? Set MAIN_SERVER_URL to where it listens." ;;
      28) err "the server at $SERVER did not answer within ${max}s ($curl_error)" ;;
      *) err "request to $SERVER failed: $curl_error" ;;
    esac
    return $EXIT_UNREACHABLE
  fi
  case "$status" in
    2??) return $EXIT_OK ;;
    401 | 403) err "the server refused the token (HTTP $status): check that ADMIN_TOKEN is this server's admin token"; return $EXIT_AUTH ;;
    429) err "too many failed logins from this address (HTTP 429): wait a minute, then check ADMIN_TOKEN"; return $EXIT_AUTH ;;
    409) err "another cleanup is already running (run $(field run_id)): try again when it is done"; return $EXIT_BUSY ;;
    *) err "unexpected answer from $SERVER$path: HTTP $status: $(detail)"; return $EXIT_SERVER ;;
  esac
}

# The formatting lives in one small Python program: tables, not raw JSON.
read -r -d '' FORMAT <<'PY'
import json, sys
from datetime import datetime, timezone

view = sys.argv[1]
try:
    doc = json.loads(sys.stdin.read() or "null")
except ValueError:
    doc = None

def when(value):
    if not value:
        return "-"
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    delta = (at - datetime.now(timezone.utc)).total_seconds()
    return f"{at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}Z ({span(delta)})"

def span(seconds):
    ago = seconds < 0
    s = abs(int(seconds))
    text = (f"{s // 86400}d {s % 86400 // 3600}h" if s >= 86400 else
            f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else
            f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s")
    return f"{text} ago" if ago else f"in {text}"

def age(seconds):
    if seconds is None:
        return "-"
    return span(-float(seconds)).replace(" ago", "")

def table(headers, rows, indent="  "):
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    counts = {"TOTAL", "FOUND", "DELETED", "FAILED", "SKIPPED", "ELIGIBLE", "PROTECTED"}
    right = [str(h) in counts for h in headers]
    def line(cells):
        out = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return indent + "  ".join(out).rstrip()
    print(line([str(h) for h in headers]))
    for r in rows:
        print(line(r))

def report(rep, title):
    mode = "dry run" if rep.get("dry_run") else "real run"
    print(f"{title}: {rep.get('status', '?').upper()} ({mode}, trigger {rep.get('trigger', '?')})")
    print(f"  run      {rep.get('run_id')}")
    if rep.get("plan_id"):
        print(f"  plan     {rep.get('plan_id')}")
    started, finished = rep.get("started_at"), rep.get("finished_at")
    print(f"  started  {when(started)}")
    if started and finished:
        took = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        print(f"  took     {took:.1f}s")
    rows = []
    bytes_ = 0
    for kind, s in (rep.get("resources") or {}).items():
        rows.append([kind, s.get("found", 0), s.get("deleted", 0), s.get("failed", 0),
                     s.get("skipped_count", len(s.get("skipped") or [])), s.get("outcome", "-")])
        bytes_ += int(s.get("bytes_reclaimed") or 0)
    print()
    table(["KIND", "FOUND", "DELETED", "FAILED", "SKIPPED", "OUTCOME"], rows)
    if bytes_:
        print(f"\n  container space reclaimed: {bytes_} bytes")
    samples = [(k, i) for k, s in (rep.get("resources") or {}).items() for i in s.get("sample") or []]
    if samples and rep.get("dry_run"):
        print("\n  would delete (sample):")
        for kind, item in samples[:15]:
            print(f"    {kind:<17} {item}")
        if len(samples) > 15:
            print(f"    … and more ({sum(int(s.get('found', 0)) for s in rep['resources'].values())} in all)")
    errors = rep.get("errors") or []
    if errors:
        print(f"\n  errors ({len(errors)}):")
        for e in errors[:10]:
            where = e.get("engine") or e.get("stage") or ""
            print(f"    {where}: {e.get('message', e)}")

if view == "field":
    value = (doc or {}).get(sys.argv[2]) if isinstance(doc, dict) else None
    print("" if value is None else value)
elif view == "detail":
    print((doc or {}).get("detail", "no detail") if isinstance(doc, dict) else "not JSON")
elif view == "found":
    print(sum(int(s.get("found") or 0) for s in (doc.get("resources") or {}).values()))
elif view == "exit":
    sys.exit(0 if doc.get("status") == "succeeded" else 1)
elif view == "status":
    d = doc
    if not d.get("enabled", True):
        mode = "scheduler OFF (manual runs only)"
    elif d.get("dry_run"):
        mode = "DRY RUN (scheduled runs plan only, delete nothing)"
    else:
        mode = "ACTIVE (scheduled runs delete)"
    print(f"botfleet cleanup status — {sys.argv[2]}")
    rows = [
        ["Mode", mode],
        ["Instance", d.get("instance", "-")],
        ["Engines", ", ".join(d.get("engines") or []) or "-"],
        ["Container cleanup", "on" if d.get("container_cleanup_enabled", True) else "off"],
        ["Bot retention", f"{d.get('retention_days', '-')} days"],
        ["Result retention", f"{d['result_retention_days']} days" if d.get("result_retention_days") is not None else "off"],
        ["Interval", f"{d.get('interval_hours', '-')} h"],
        ["Next run", when(d.get("next_run_at")) + (f", {d['next_run_reason']}" if d.get("next_run_reason") else "")],
        ["Running now", f"run {d['running']}" if d.get("running") else "no"],
    ]
    if "consecutive_failures" in d:
        rows.append(["Consecutive failures", d["consecutive_failures"]])
    breakers = d.get("breakers") or {}
    if breakers:
        rows.append(["Breakers", ", ".join(f"{k} {v.get('state')}" for k, v in sorted(breakers.items()))])
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for name, b in sorted(breakers.items()):
        if b.get("state") != "closed":
            print(f"  ! breaker {name} is {b.get('state')} since {b.get('since')}: {b.get('last_error')}")
    last = d.get("last_run")
    print()
    if last:
        report(last, "Last run")
    else:
        print("No cleanup has run yet. Preview one with: monitor-cleanup.sh dry-run")
elif view == "orphans":
    print(f"Orphaned resources at {when(doc.get('now'))}")
    summary = doc.get("summary") or {}
    table(["KIND", "TOTAL", "ELIGIBLE", "PROTECTED"],
          [[k, v.get("total", 0), v.get("eligible", 0), v.get("protected", 0)] for k, v in summary.items()])
    items = doc.get("items") or []
    print()
    if items:
        rows = [[i.get("kind"), str(i.get("id"))[:36], "yes" if i.get("eligible") else "no",
                 age(i.get("age_seconds")), (i.get("engine") + " " if i.get("engine") else "") + str(i.get("reason", ""))]
                for i in items[:50]]
        table(["KIND", "ID", "ELIGIBLE", "AGE", "REASON"], rows)
        if len(items) > 50:
            print(f"  … {len(items) - 50} more (see GET /admin/cleanup/orphans)")
    else:
        print("  Nothing is orphaned.")
    for e in doc.get("errors") or []:
        print(f"  ! {e.get('engine') or e.get('stage')}: {e.get('message')}")
elif view == "dry-run":
    report(doc, "Dry run")
elif view == "cleanup":
    report(doc, "Cleanup")
elif view == "removed":
    audit = (doc.get("audit") or {})
    items = audit.get("items") or []
    if items:
        print(f"\nRemoved ({audit.get('total', len(items))} audit records):")
        table(["KIND", "ID", "ENGINE", "REASON"],
              [[a.get("kind"), a.get("resource_id"), a.get("engine") or "-", a.get("reason")] for a in items])
        if audit.get("total", 0) > len(items):
            print(f"  … see GET /admin/cleanup/runs/{doc.get('id')} for all of them")
    else:
        print("\nNothing was removed.")
PY

fmt() { printf '%s' "$BODY" | python3 -c "$FORMAT" "$@"; }
field() { fmt field "$1" 2>/dev/null; }
detail() { fmt detail 2>/dev/null || printf '%s' "$BODY" | head -c 200; }

cmd_status() {
  api GET /admin/cleanup/status || return $?
  fmt status "$SERVER"
}

cmd_orphans() {
  api GET /admin/cleanup/orphans || return $?
  fmt orphans
}

cmd_dry_run() {
  say "Planning a cleanup (dry run: nothing is deleted)…"
  api POST "/admin/cleanup?dry_run=true" "$TIMEOUT" || return $?
  fmt dry-run
  say ""
  say "To apply exactly this plan: monitor-cleanup.sh cleanup (or menu option 4)"
  fmt exit
}

# cmd_cleanup [--yes]: dry run, show the plan, confirm, apply that plan_id, show what went.
cmd_cleanup() {
  local assume_yes="${1:-}" plan found answer
  say "Step 1/2: planning (dry run, nothing is deleted yet)…"
  api POST "/admin/cleanup?dry_run=true" "$TIMEOUT" || return $?
  fmt dry-run
  plan="$(field plan_id)"
  found="$(fmt found)"
  if [ -z "$plan" ]; then
    err "the dry run returned no plan_id; nothing deleted"
    return $EXIT_SERVER
  fi
  if [ "$(field status)" = "failed" ]; then
    err "the dry run failed; fix the errors above before cleaning up"
    return $EXIT_RUN
  fi
  if [ "$found" = "0" ]; then
    say ""
    say "Nothing to clean up."
    return $EXIT_OK
  fi
  say ""
  if [ "$assume_yes" != "--yes" ]; then
    printf 'Delete these %s resources by applying plan %s? Type "yes" to confirm: ' "$found" "$plan"
    if ! read -r answer || [ "$answer" != "yes" ]; then
      say ""
      say "Cancelled: nothing was deleted."
      return $EXIT_CANCELLED
    fi
  fi
  say "Step 2/2: applying plan $plan…"
  api POST "/admin/cleanup?dry_run=false&plan_id=$plan" "$TIMEOUT" || return $?
  local report="$BODY" run_id
  fmt cleanup
  run_id="$(field run_id)"
  if api GET "/admin/cleanup/runs/$run_id?audit_limit=50"; then
    fmt removed
  fi
  BODY="$report"
  fmt exit
}

menu() {
  local choice code
  while true; do
    say ""
    say "botfleet cleanup monitor — $SERVER"
    say "  1) Check service status"
    say "  2) List orphaned resources"
    say "  3) Trigger dry-run"
    say "  4) Perform cleanup"
    say "  q) Quit"
    printf 'Choose [1-4, q]: '
    if ! read -r choice; then
      say ""
      return $EXIT_OK
    fi
    say ""
    code=0
    case "$choice" in
      1) cmd_status || code=$? ;;
      2) cmd_orphans || code=$? ;;
      3) cmd_dry_run || code=$? ;;
      4) cmd_cleanup || code=$? ;;
      q | Q | quit | exit) return $EXIT_OK ;;
      "") continue ;;
      *) err "unknown choice '$choice': type 1, 2, 3, 4 or q" ;;
    esac
    [ $code -eq 0 ] || say "(exit code $code)"
  done
}

main() {
  case "${1:-}" in
    -h | --help | help) usage; return $EXIT_OK ;;
  esac
  preflight || return $?
  case "${1:-}" in
    "") menu ;;
    status) cmd_status ;;
    orphans) cmd_orphans ;;
    dry-run | dryrun) cmd_dry_run ;;
    cleanup)
      case "${2:-}" in
        "" | --yes) cmd_cleanup "${2:-}" ;;
        *) err "unknown option '$2' (cleanup accepts --yes)"; usage >&2; return $EXIT_USAGE ;;
      esac
      ;;
    *) err "unknown command '$1'"; usage >&2; return $EXIT_USAGE ;;
  esac
}

main "$@"
exit $?
