// botfleet dashboard, the cleanup view: a static page over the JSON API (no build step).
// fleet.js adds the fleet and bot pages with the helpers defined here.
// The admin token lives in sessionStorage (this tab only) and goes out as a bearer token.
// Every value from the server is inserted as text, never as HTML.
"use strict";

const TOKEN_KEY = "botfleet.adminToken";
const REFRESH_MS = 30000;
const SVG = "http://www.w3.org/2000/svg";
let timer = null;
let pendingPlan = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind || text}` }, text);
}

function when(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  const seconds = Math.round((at.getTime() - Date.now()) / 1000);
  return `${at.toISOString().replace("T", " ").slice(0, 19)}Z (${span(seconds)})`;
}

function span(seconds) {
  if (Math.abs(seconds) < 5) return "just now";
  const s = Math.abs(seconds);
  const text = s >= 86400 ? `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
    : s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
    : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
  return seconds < 0 ? `${text} ago` : `in ${text}`;
}

function sum(obj) {
  return Object.values(obj || {}).reduce((a, b) => a + (Number(b) || 0), 0);
}

function table(headers, rows, numeric) {
  const num = new Set(numeric || []);
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", num.has(i) ? { class: "num" } : {}, h)))),
    el("tbody", {}, rows.map((row) => el("tr", {},
      row.map((cell, i) => el("td", num.has(i) ? { class: "num" } : {}, cell))))));
}

class AuthError extends Error {}

async function api(method, path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const answer = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    cache: "no-store",
  });
  let body = {};
  try { body = await answer.json(); } catch (_) { /* not JSON */ }
  if (answer.status === 401) {
    signOut("The server refused this token. Check ADMIN_TOKEN and sign in again.");
    throw new AuthError("unauthorized");
  }
  if (answer.status === 429) throw new Error("Too many failed sign-ins from here; wait a minute.");
  if (answer.status === 409) {
    throw new Error(`Another cleanup is already running (run ${body.run_id || "unknown"}).`);
  }
  if (!answer.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`HTTP ${answer.status}: ${detail || answer.statusText}`);
  }
  return body;
}

// --- sign in / out ---------------------------------------------------------------------------
function showLogin(message) {
  $("app").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer) clearInterval(timer);
  timer = null;
  showLogin(message);
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-button").disabled = true;
  try {
    // One call checks the token, so a wrong one counts as one failed sign-in, not three.
    await api("GET", "/admin/cleanup/status");
    await loadAll();
    startApp();
  } catch (error) {
    if (!(error instanceof AuthError)) showLogin(`Cannot reach the server: ${error.message}`);
  } finally {
    $("login-button").disabled = false;
  }
}

function startApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  // The fleet and bot pages (fleet.js) show themselves by the address's #fragment.
  document.dispatchEvent(new Event("botfleet:signed-in"));
  if (!timer) timer = setInterval(() => loadAll().catch(showError), REFRESH_MS);
}

function showError(error) {
  if (error instanceof AuthError) return;
  $("error").textContent = error.message;
}

// --- data ------------------------------------------------------------------------------------
async function loadAll() {
  const [status, runs, orphans] = await Promise.all([
    api("GET", "/admin/cleanup/status"),
    api("GET", "/admin/cleanup/runs?limit=30"),
    api("GET", "/admin/cleanup/orphans?limit=20"),
  ]);
  renderStatus(status);
  renderRuns(runs.items || []);
  renderTrend(runs.items || []);
  renderRecovered(runs.items || []);
  renderOrphans(orphans);
  $("error").textContent = "";
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function renderStatus(s) {
  const mode = !s.enabled ? badge("scheduler off", "off")
    : s.dry_run ? badge("DRY RUN", "dry") : badge("ACTIVE", "active");
  const last = s.last_run;
  const rows = [
    ["Mode", mode],
    ["Instance", s.instance],
    ["Engines", (s.engines || []).join(", ") || "—"],
    ["Next run", s.next_run_at ? when(s.next_run_at) + (s.next_run_reason ? ` · ${s.next_run_reason}` : "")
      : "not scheduled on this replica"],
    ["Running now", s.running ? badge(`run ${s.running.slice(0, 8)}`, "running") : "no"],
    ["Last run", last ? el("span", {}, badge(last.status), ` ${last.dry_run ? "dry run" : "real run"}, `,
      `${last.trigger}, ${when(last.finished_at || last.started_at)}`) : "none yet"],
    ["Bot retention", `${s.retention_days} days`],
    ["Container cleanup", s.container_cleanup_enabled ? "on" : "off"],
  ];
  if (s.consecutive_failures !== undefined) rows.push(["Consecutive failures", String(s.consecutive_failures)]);
  const list = $("status-list");
  list.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const breakers = Object.entries(s.breakers || {});
  $("breakers").replaceChildren(breakers.length
    ? el("p", {}, "Breakers: ", breakers.map(([name, b]) =>
      el("span", { title: b.last_error || "" }, badge(`${name} ${b.state}`, b.state), " ")))
    : el("p", { class: "muted" }, "No breakers reported (scheduler not running on this replica)."));
}

function renderRuns(items) {
  if (!items.length) {
    $("runs-table").replaceChildren(el("p", { class: "muted" }, "No runs yet."));
    return;
  }
  const rows = items.slice(0, 12).map((r) => [
    when(r.started_at).split(" (")[0].slice(5, 16),
    badge(r.status),
    r.dry_run ? "dry" : "real",
    r.trigger,
    String(sum(r.found)),
    String(sum(r.deleted)),
    String(r.errors || 0),
  ]);
  $("runs-table").replaceChildren(
    table(["Started (UTC)", "Status", "Mode", "Trigger", "Found", "Deleted", "Errors"], rows, [4, 5, 6]));
}

function renderOrphans(o) {
  const summary = Object.entries(o.summary || {});
  const parts = [table(["Kind", "Total", "Eligible", "Protected"],
    summary.map(([kind, v]) => [kind, String(v.total ?? 0), String(v.eligible ?? 0), String(v.protected ?? "—")]),
    [1, 2, 3])];
  const items = (o.items || []).slice(0, 8);
  if (items.length) {
    parts.push(el("p", { class: "muted" }, "Oldest items:"));
    parts.push(table(["Kind", "Id", "Eligible", "Why"], items.map((i) => [
      i.kind, el("span", { class: "id" }, String(i.id).slice(0, 12)), i.eligible ? "yes" : "no", i.reason])));
  }
  $("orphans-table").replaceChildren(...parts);
}

// Bars: what each real run deleted. Line: what each run found eligible (the backlog it met).
function renderTrend(items) {
  const runs = items.slice().reverse();
  const box = $("trend-chart");
  if (!runs.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No runs yet: the chart fills in as cleanups run."));
    return;
  }
  const W = 900, H = 240, left = 48, right = 12, top = 12, bottom = 34;
  const deleted = runs.map((r) => (r.dry_run ? 0 : sum(r.deleted)));
  const backlog = runs.map((r) => sum(r.found));
  const max = Math.max(1, ...deleted, ...backlog);
  const step = (W - left - right) / runs.length;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
    "aria-label": "deletions and backlog per run" });
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    chart.append(svg("line", { class: "grid-line", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    chart.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  runs.forEach((r, i) => {
    const h = (H - top - bottom) * (deleted[i] / max);
    const bar = svg("rect", { class: "bar", x: left + i * step + step * 0.2, width: Math.max(1, step * 0.6),
      y: H - bottom - h, height: h });
    bar.append(svg("title", {}, `${r.started_at}: deleted ${deleted[i]}, found ${backlog[i]}${r.dry_run ? " (dry run)" : ""}`));
    chart.append(bar);
  });
  const points = backlog.map((v, i) => `${left + i * step + step / 2},${y(v)}`).join(" ");
  chart.append(svg("polyline", { class: "backlog", points }));
  backlog.forEach((v, i) => chart.append(svg("circle", { class: "dot", cx: left + i * step + step / 2, cy: y(v), r: 3 })));
  chart.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }));
  const label = (r) => r.started_at.replace("T", " ").slice(5, 16);
  chart.append(svg("text", { x: left, y: H - 12 }, label(runs[0])));
  chart.append(svg("text", { x: W - right, y: H - 12, "text-anchor": "end" }, label(runs[runs.length - 1])));
  const legend = el("div", { class: "legend" },
    el("span", {}, el("span", { class: "swatch bar-swatch" }), "deleted by the run"),
    el("span", {}, el("span", { class: "swatch backlog-swatch" }), "backlog found by the run (dry runs too)"));
  box.replaceChildren(chart, legend);
}

// Bars: the bytes each real run freed, every kind together; its title lists them per kind
// (docs/operations.md, "Storage recovered": what the figure means on each backend).
function renderRecovered(items) {
  const runs = items.slice().reverse().filter((r) => !r.dry_run);
  const box = $("recovered-chart");
  if (!runs.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No real runs yet."));
    return;
  }
  const W = 900, H = 160, left = 64, right = 12, top = 12, bottom = 34;
  const freed = runs.map((r) => sum(r.bytes_reclaimed || {}));
  const max = Math.max(1, ...freed);
  const step = (W - left - right) / runs.length;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
    "aria-label": "storage recovered per real run" });
  for (const frac of [0, 1]) {
    const v = Math.round(max * frac);
    chart.append(svg("line", { class: "grid-line", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    chart.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, bytesText(v)));
  }
  runs.forEach((r, i) => {
    const h = (H - top - bottom) * (freed[i] / max);
    const bar = svg("rect", { class: "bar recovered", x: left + i * step + step * 0.2,
      width: Math.max(1, step * 0.6), y: H - bottom - h, height: h });
    const kinds = Object.entries(r.bytes_reclaimed || {}).filter(([, v]) => v > 0)
      .map(([k, v]) => `${k} ${bytesText(v)}`).join(", ");
    bar.append(svg("title", {}, `${r.started_at}: ${bytesText(freed[i])}${kinds ? ` (${kinds})` : ""}`));
    chart.append(bar);
  });
  chart.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }));
  const label = (r) => r.started_at.replace("T", " ").slice(5, 16);
  chart.append(svg("text", { x: left, y: H - 12 }, label(runs[0])));
  chart.append(svg("text", { x: W - right, y: H - 12, "text-anchor": "end" }, label(runs[runs.length - 1])));
  box.replaceChildren(chart);
}

function bytesText(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n, u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
  return `${u ? v.toFixed(1) : v} ${units[u]}`;
}

// --- actions ---------------------------------------------------------------------------------
function setBusy(busy, message) {
  for (const id of ["dry-run", "cleanup", "confirm-apply", "confirm-cancel"]) $(id).disabled = busy;
  $("action-state").textContent = message || "";
}

function renderReport(report, title) {
  $("report").hidden = false;
  $("report-title").textContent = title;
  $("report-body").replaceChildren(...reportParts(report));
  $("report").scrollIntoView({ block: "nearest" });
}

function reportParts(report) {
  const kinds = Object.entries(report.resources || {});
  const bytes = kinds.reduce((a, [, s]) => a + (Number(s.bytes_reclaimed) || 0), 0);
  const parts = [
    el("p", {}, badge(report.status), ` ${report.dry_run ? "dry run" : "real run"} · run `,
      el("span", { class: "id" }, report.run_id), report.plan_id ? " · plan " : "",
      report.plan_id ? el("span", { class: "id" }, report.plan_id) : ""),
    table(["Kind", "Found", "Deleted", "Failed", "Skipped", "Outcome"], kinds.map(([kind, s]) => [
      kind, String(s.found ?? 0), String(s.deleted ?? 0), String(s.failed ?? 0),
      String(s.skipped_count ?? (s.skipped || []).length), s.outcome || "—"]), [1, 2, 3, 4]),
  ];
  if (bytes) {
    const each = kinds.filter(([, s]) => Number(s.bytes_reclaimed) > 0)
      .map(([kind, s]) => `${kind} ${bytesText(Number(s.bytes_reclaimed))}`).join(", ");
    parts.push(el("p", { id: "storage-recovered" }, `Storage recovered: ${bytesText(bytes)} (${each})`));
  }
  for (const e of report.errors || []) {
    parts.push(el("p", { class: "error" }, `${e.engine || e.stage || ""}: ${e.message || JSON.stringify(e)}`));
  }
  return parts;
}

async function dryRun() {
  setBusy(true, "Planning (dry run: nothing is deleted)…");
  $("confirm").hidden = true;
  try {
    const report = await api("POST", "/admin/cleanup?dry_run=true");
    renderReport(report, "Dry run report");
    setBusy(false, `Dry run ${report.status}: ${sum(found(report))} resources would be deleted.`);
    await loadAll();
  } catch (error) {
    setBusy(false, "");
    showError(error);
  }
}

function found(report) {
  return Object.fromEntries(Object.entries(report.resources || {}).map(([k, s]) => [k, s.found || 0]));
}

async function planCleanup() {
  setBusy(true, "Planning the cleanup (nothing is deleted yet)…");
  try {
    const report = await api("POST", "/admin/cleanup?dry_run=true");
    const total = sum(found(report));
    setBusy(false, "");
    if (report.status === "failed") {
      renderReport(report, "The plan failed");
      return;
    }
    if (!total) {
      $("action-state").textContent = "Nothing to clean up.";
      return;
    }
    pendingPlan = report.plan_id;
    $("confirm-text").textContent =
      `This plan deletes ${total} resources. Apply plan ${report.plan_id}? Only what it lists can go.`;
    $("confirm-plan").replaceChildren(...reportParts(report));
    $("confirm").hidden = false;
  } catch (error) {
    setBusy(false, "");
    showError(error);
  }
}

async function applyPlan() {
  const plan = pendingPlan;
  if (!plan) return;
  setBusy(true, `Applying plan ${plan}…`);
  try {
    const report = await api("POST", `/admin/cleanup?dry_run=false&plan_id=${encodeURIComponent(plan)}`);
    pendingPlan = null;
    $("confirm").hidden = true;
    renderReport(report, "Cleanup report");
    setBusy(false, `Cleanup ${report.status}: ${sum(Object.fromEntries(Object.entries(report.resources || {})
      .map(([k, s]) => [k, s.deleted || 0])))} resources deleted.`);
    await loadAll();
  } catch (error) {
    setBusy(false, "");
    showError(error);
  }
}

function cancelPlan() {
  pendingPlan = null;
  $("confirm").hidden = true;
  $("action-state").textContent = "Cancelled: nothing was deleted.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut("Signed out."));
  $("refresh").addEventListener("click", () => loadAll().catch(showError));
  $("dry-run").addEventListener("click", dryRun);
  $("cleanup").addEventListener("click", planCleanup);
  $("confirm-apply").addEventListener("click", applyPlan);
  $("confirm-cancel").addEventListener("click", cancelPlan);
  if (sessionStorage.getItem(TOKEN_KEY)) {
    loadAll().then(startApp).catch((error) => {
      if (!(error instanceof AuthError)) showLogin(`Cannot reach the server: ${error.message}`);
    });
  } else {
    showLogin("");
  }
});
