// botfleet dashboard, the fleet and bot pages (#/fleet, #/bots/<id>) over the JSON API.
// Uses dashboard.js's helpers ($, el, badge, when, span, table, signOut, AuthError, TOKEN_KEY).
// Every value from the server is inserted as text, never as HTML; errors are shown as the API
// gives them ("HTTP <status>: <detail>").
"use strict";

const FLEET_PAGE = 50;
const RESULTS_PAGE = 10;
const LOG_TAIL = 100;
const fleet = { cursors: [null], filter: {} };
const botPage = { id: null, bot: null, resultCursors: [null], pending: null };

// A JSON call with an optional body; the API's own error detail, as given, on failure.
async function call(method, path, body) {
  const headers = {
    Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`,
    Accept: "application/json",
  };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await answer.json(); } catch (_) { /* not JSON */ }
  if (answer.status === 401) {
    signOut("The server refused this token. Check ADMIN_TOKEN and sign in again.");
    throw new AuthError("unauthorized");
  }
  if (!answer.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    const error = new Error(`HTTP ${answer.status}: ${detail || answer.statusText}`);
    error.status = answer.status;
    throw error;
  }
  return data;
}

function shown(error, id) {
  if (error instanceof AuthError) return;
  $(id).textContent = error.message;
}

function pairs(text, what) {
  const out = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`${what}: "${line}" is not KEY=VALUE`);
    out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

function age(iso) {
  return iso ? span(Math.round((new Date(iso).getTime() - Date.now()) / 1000)).replace(" ago", "") : "—";
}

function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—";
}

// --- which page ------------------------------------------------------------------------------
function route() {
  if ($("app").hidden) return;
  const hash = location.hash || "#/";
  const bot = hash.match(/^#\/bots\/([0-9a-fA-F-]{36})$/);
  const view = hash === "#/fleet" ? "fleet" : bot ? "bot" : "cleanup";
  $("cleanup-view").hidden = view !== "cleanup";
  $("fleet-view").hidden = view !== "fleet";
  $("bot-view").hidden = view !== "bot";
  $("nav-cleanup").className = view === "cleanup" ? "current" : "";
  $("nav-fleet").className = view !== "cleanup" ? "current" : "";
  if (view === "fleet") loadFleet().catch((e) => shown(e, "fleet-error"));
  if (view === "bot") openBot(bot[1].toLowerCase());
}

// --- the fleet -------------------------------------------------------------------------------
function fleetQuery(cursor) {
  const params = new URLSearchParams({ limit: String(FLEET_PAGE) });
  const f = fleet.filter;
  if (f.q) params.set("q", f.q);
  if (f.label) params.append("label", f.label);
  if (f.status) params.set("status", f.status);
  if (cursor) params.set("cursor", cursor);
  return `/fleet?${params}`;
}

async function loadFleet() {
  const cursor = fleet.cursors[fleet.cursors.length - 1];
  const page = await call("GET", fleetQuery(cursor));
  $("fleet-error").textContent = "";
  renderCounts(page.counts || {});
  const from = (fleet.cursors.length - 1) * FLEET_PAGE;
  $("fleet-total").textContent = page.total
    ? `${from + 1}–${from + page.items.length} of ${page.total}` : "no bots match";
  $("fleet-next").disabled = !page.next_cursor;
  $("fleet-next").dataset.cursor = page.next_cursor || "";
  $("fleet-first").disabled = fleet.cursors.length === 1;
  const rows = page.items.map((b) => [
    el("a", { href: `#/bots/${b.id}`, class: "bot-link" }, b.name),
    badge(b.status),
    b.node || b.engine || "—",
    age(b.created_at),
    b.last_result_at ? when(b.last_result_at) : "never",
    String(b.results_last_hour),
    labelText(b.labels),
  ]);
  $("fleet-table").replaceChildren(rows.length
    ? table(["Name", "Status", "Engine / node", "Age", "Last result", "Results 1 h", "Labels"], rows, [5])
    : el("p", { class: "muted" }, "No bots match."));
}

function renderCounts(counts) {
  const chips = Object.entries(counts).map(([status, n]) => {
    const chip = el("button", {
      type: "button",
      class: `chip${fleet.filter.status === status ? " selected" : ""}`,
      "data-status": status,
    }, `${status} ${n}`);
    chip.addEventListener("click", () => {
      $("fleet-status").value = fleet.filter.status === status ? "" : status;
      applyFilter();
    });
    return chip;
  });
  $("fleet-counts").replaceChildren(...chips);
}

function applyFilter(event) {
  if (event) event.preventDefault();
  fleet.filter = {
    q: $("fleet-q").value.trim(),
    label: $("fleet-label").value.trim(),
    status: $("fleet-status").value,
  };
  fleet.cursors = [null];
  loadFleet().catch((e) => shown(e, "fleet-error"));
}

function nextPage() {
  const cursor = $("fleet-next").dataset.cursor;
  if (!cursor) return;
  fleet.cursors.push(cursor);
  loadFleet().catch((e) => shown(e, "fleet-error"));
}

function firstPage() {
  fleet.cursors = [null];
  loadFleet().catch((e) => shown(e, "fleet-error"));
}

// --- create ----------------------------------------------------------------------------------
let pendingCreate = null;

function askCreate(event) {
  event.preventDefault();
  $("create-error").textContent = "";
  $("create-state").textContent = "";
  try {
    const body = { name: $("create-name").value.trim(), image: $("create-image").value.trim() };
    const command = $("create-command").value.trim();
    if (command) body.command = command.split(/\s+/);
    body.env = pairs($("create-env").value, "Environment");
    body.labels = pairs($("create-labels").value, "Labels");
    pendingCreate = body;
    $("create-confirm-text").textContent =
      `Create bot "${body.name}" from ${body.image}? Its container starts at once.`;
    $("create-confirm").hidden = false;
  } catch (error) {
    $("create-error").textContent = error.message;
  }
}

async function applyCreate() {
  const body = pendingCreate;
  if (!body) return;
  $("create-apply").disabled = true;
  $("create-state").textContent = `Creating ${body.name}…`;
  try {
    const bot = await call("POST", "/bots", body);
    pendingCreate = null;
    $("create-confirm").hidden = true;
    $("create-state").replaceChildren(
      "Created ", el("a", { id: "created-link", href: `#/bots/${bot.id}` }, bot.name),
      ` (${bot.status}). Its token, shown this once: `,
      el("code", { id: "created-token" }, bot.token));
    $("create-form").reset();
    await loadFleet();
  } catch (error) {
    $("create-state").textContent = "";
    shown(error, "create-error");
  } finally {
    $("create-apply").disabled = false;
  }
}

function cancelCreate() {
  pendingCreate = null;
  $("create-confirm").hidden = true;
  $("create-state").textContent = "Cancelled: nothing was created.";
}

// --- one bot ---------------------------------------------------------------------------------
function openBot(id) {
  if (botPage.id !== id) {
    botPage.id = id;
    botPage.resultCursors = [null];
    $("bot-state").textContent = "";
    $("bot-confirm").hidden = true;
  }
  loadBot().catch((e) => shown(e, "bot-error"));
}

async function loadBot() {
  const id = botPage.id;
  $("bot-error").textContent = "";
  const bot = await call("GET", `/bots/${id}`);
  botPage.bot = bot;
  $("bot-title").replaceChildren(bot.name, " ", badge(bot.status));
  const rows = [
    ["Id", el("span", { class: "id" }, bot.id)],
    ["Image", bot.image],
    ["Command", bot.command ? bot.command.join(" ") : "the image's"],
    ["Labels", labelText(bot.labels)],
    ["Engine", bot.engine || "—"],
    ["Node", bot.node || "—"],
    ["Container", bot.container_id ? el("span", { class: "id" }, bot.container_id.slice(0, 12)) : "—"],
    ["Exit code", bot.exit_code === null ? "—" : String(bot.exit_code)],
    ["Detail", bot.status_detail || "—"],
    ["Created", when(bot.created_at)],
    ["Deleted", bot.deleted_at ? when(bot.deleted_at) : "—"],
  ];
  $("bot-fields").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("bot-delete").hidden = Boolean(bot.deleted_at);
  $("bot-restore").hidden = !bot.deleted_at;
  await Promise.all([loadResults(), loadLogs(), loadHistory()]);
}

async function loadResults() {
  const cursor = botPage.resultCursors[botPage.resultCursors.length - 1];
  const params = new URLSearchParams({ limit: String(RESULTS_PAGE) });
  if (cursor) params.set("cursor", cursor);
  const page = await call("GET", `/bots/${botPage.id}/results?${params}`);
  $("bot-results-total").textContent = `(${page.total})`;
  $("bot-results-older").disabled = !page.next_cursor;
  $("bot-results-older").dataset.cursor = page.next_cursor || "";
  $("bot-results-newest").disabled = botPage.resultCursors.length === 1;
  $("bot-results").replaceChildren(page.items.length
    ? table(["Id", "Created (UTC)", "Data"], page.items.map((r) => [
      String(r.id), r.created_at.replace("T", " ").slice(0, 19),
      el("pre", { class: "json" }, JSON.stringify(r.data, null, 2))]), [0])
    : el("p", { class: "muted" }, "No results yet."));
}

async function loadLogs() {
  const box = $("bot-logs");
  try {
    const page = await call("GET", `/bots/${botPage.id}/logs?tail=${LOG_TAIL}`);
    box.replaceChildren(...page.items.map((line) => el("span",
      { class: line.stream === "stderr" ? "stderr" : "" },
      `${(line.at || "").replace("T", " ").slice(0, 23)} ${line.line}\n`)));
    if (!page.items.length) box.textContent = "(nothing printed yet)";
  } catch (error) {
    if (error instanceof AuthError) return;
    box.textContent = error.message; // e.g. 404: the container is gone, and why
  }
}

async function loadHistory() {
  const page = await call("GET", `/bots/${botPage.id}/history`);
  $("bot-history").replaceChildren(table(["When", "Event", "Detail", "Run"], page.items.map((e) => [
    when(e.at), e.event, e.detail, e.run_id ? el("span", { class: "id" }, e.run_id.slice(0, 8)) : "—"])));
}

function askBot(action) {
  const bot = botPage.bot;
  if (!bot) return;
  botPage.pending = action;
  $("bot-confirm-text").textContent = action === "delete"
    ? `Delete bot "${bot.name}"? Its container is stopped and kept; it can be restored within retention.`
    : `Restore bot "${bot.name}" and run it again?`;
  $("bot-confirm").hidden = false;
}

async function applyBot() {
  const action = botPage.pending;
  const bot = botPage.bot;
  if (!action || !bot) return;
  $("bot-confirm-apply").disabled = true;
  try {
    const answer = action === "delete"
      ? await call("DELETE", `/bots/${bot.id}`)
      : await call("POST", `/bots/${bot.id}/restore`);
    $("bot-state").textContent = action === "delete"
      ? `Deleted at ${answer.deleted_at}.`
      : `Restored (${answer.status})${answer.token ? `; its new token, shown this once: ${answer.token}` : ""}.`;
    $("bot-confirm").hidden = true;
    botPage.pending = null;
    await loadBot();
  } catch (error) {
    shown(error, "bot-error");
  } finally {
    $("bot-confirm-apply").disabled = false;
  }
}

function cancelBot() {
  botPage.pending = null;
  $("bot-confirm").hidden = true;
  $("bot-state").textContent = "Cancelled: nothing changed.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("fleet-filter").addEventListener("submit", applyFilter);
  $("fleet-next").addEventListener("click", nextPage);
  $("fleet-first").addEventListener("click", firstPage);
  $("create-form").addEventListener("submit", askCreate);
  $("create-apply").addEventListener("click", applyCreate);
  $("create-cancel").addEventListener("click", cancelCreate);
  $("bot-delete").addEventListener("click", () => askBot("delete"));
  $("bot-restore").addEventListener("click", () => askBot("restore"));
  $("bot-confirm-apply").addEventListener("click", applyBot);
  $("bot-confirm-cancel").addEventListener("click", cancelBot);
  $("bot-refresh").addEventListener("click", () => loadBot().catch((e) => shown(e, "bot-error")));
  $("bot-results-older").addEventListener("click", () => {
    const cursor = $("bot-results-older").dataset.cursor;
    if (!cursor) return;
    botPage.resultCursors.push(cursor);
    loadResults().catch((e) => shown(e, "bot-error"));
  });
  $("bot-results-newest").addEventListener("click", () => {
    botPage.resultCursors = [null];
    loadResults().catch((e) => shown(e, "bot-error"));
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("botfleet:signed-in", route);
});
