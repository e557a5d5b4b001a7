// Dispatcher console: incident queue with live timers, incident detail (timeline, notes, calls,
// recommendations, assignments, status actions), unit status board. Commands go through REST; the view
// stays current through the websocket (RealtimeClient).

import { api, beep, clock, config, duration, el, hideBanner, showBanner, t, timerLevel, typing } from "./common.js";
import { RealtimeClient } from "./realtime.js";

const targets = {
  minimumData: Number(document.body.dataset.targetMinimumDataS),
  dispatch: Number(document.body.dataset.targetDispatchS),
  onScene: Number(document.body.dataset.targetOnSceneS),
};
const STATUS_ORDER = Object.keys(config.unit_statuses);
const STATUS_KEYS = { e: "en_route", l: "on_scene", t: "transporting", h: "at_hospital", d: "available", f: "out_of_service" };
const KEY_FOR_STATUS = Object.fromEntries(Object.entries(STATUS_KEYS).map(([k, v]) => [v, k.toUpperCase()]));

const state = {
  incidents: new Map(), // folio -> summary
  units: new Map(), // id -> unit (agency: {id, name})
  agencies: new Map(), // id -> name
  cursor: null, // folio highlighted in the queue
  selected: null, // folio shown in the detail
  detail: null,
  recs: null,
  recList: [], // flattened candidates, numbered 1..5
};
window.cadAlerts = [];

// --- Connection ------------------------------------------------------------------------------
const conn = document.getElementById("conn");
function setConnection(status) {
  const labels = { connecting: t("conn_connecting"), open: t("conn_open"), closed: t("conn_closed"), refused: t("conn_refused") };
  conn.textContent = labels[status] || status;
  conn.className = `conn conn-${status}`;
  conn.dataset.state = status;
  if (status === "closed") showBanner(t("conn_lost_banner"), "warning", { sticky: true });
  if (status === "refused") showBanner(t("conn_refused"), "error", { sticky: true });
  if (status === "open") hideBanner();
}

function onNotice(notice) {
  if (notice.code === "resync_client") {
    showBanner(t("resync_banner"), "warning");
    return;
  }
  if (notice.level === "info") return; // ordinary reconnect replay: nothing to worry the operator about
  showBanner(notice.message || t("overload_banner"), notice.level === "error" ? "error" : "warning");
}

// --- Snapshots --------------------------------------------------------------------------------
async function loadIncidents() {
  const page = await api("incidents/?open=true&limit=1000");
  state.incidents.clear();
  for (const incident of page.results) state.incidents.set(incident.folio, incident);
  renderQueue();
  if (state.selected) refreshDetail();
}

async function loadUnits() {
  const units = await api("units/");
  state.units.clear();
  for (const unit of units) {
    state.units.set(unit.id, unit);
    if (unit.agency) state.agencies.set(unit.agency.id, unit.agency.name);
  }
  renderBoard();
}

async function loadConsoleSnapshot() {
  await Promise.all([loadIncidents(), loadUnits()]);
}

// --- Live events ------------------------------------------------------------------------------
function applyConsoleEvent(envelope) {
  const payload = envelope.payload || {};
  switch (envelope.type) {
    case "incident.created":
      upsertIncident(payload);
      if (payload.priority === "ALTA") alertHighPriority(payload);
      break;
    case "incident.updated":
    case "incident.closed":
      upsertIncident(payload);
      touchDetail(payload.folio);
      break;
    case "incident.note_added":
    case "call.created":
      touchDetail(payload.folio || payload.incident);
      break;
    case "assignment.created":
      upsertUnit(payload.unit);
      touchDetail(payload.folio, true);
      break;
    case "unit.status_changed":
      upsertUnit(payload);
      if (state.selected && (payload.incident === state.selected || isAssignedToSelected(payload.id))) touchDetail(state.selected, true);
      else if (state.selected) scheduleRecs();
      break;
    default:
      break;
  }
}

function applyAvlEvent(envelope) {
  for (const [id, lat, lon, at] of envelope.payload.positions || []) {
    const unit = state.units.get(id);
    if (unit) Object.assign(unit, { lat, lon, position_at: at });
  }
}

function upsertIncident(summary) {
  if (!summary || !summary.folio) return;
  const current = state.incidents.get(summary.folio);
  if (current && current.version > summary.version) return; // older news
  if (summary.status === "closed") state.incidents.delete(summary.folio);
  else state.incidents.set(summary.folio, { ...(current || {}), ...summary });
  scheduleRender(renderQueue);
}

function upsertUnit(summary) {
  if (!summary || summary.id === undefined) return;
  const current = state.units.get(summary.id) || {};
  if (current.version > summary.version) return;
  const agency = current.agency || { id: summary.agency_id, name: state.agencies.get(summary.agency_id) || "" };
  state.units.set(summary.id, { ...current, ...summary, agency });
  scheduleRender(renderBoard);
}

function isAssignedToSelected(unitId) {
  return Boolean(state.detail && state.detail.assignments.some((a) => a.active && a.unit_id === unitId));
}

function alertHighPriority(summary) {
  window.cadAlerts.push(summary.folio);
  beep();
  showBanner(t("new_high_priority", { folio: summary.folio, name: summary.type_name }), "alert");
  requestAnimationFrame(() => {
    const row = document.querySelector(`tr[data-folio="${CSS.escape(summary.folio)}"]`);
    if (row) row.classList.add("flash");
  });
}

const pendingRenders = new Set();
function scheduleRender(fn) {
  if (pendingRenders.has(fn)) return;
  pendingRenders.add(fn);
  requestAnimationFrame(() => { pendingRenders.delete(fn); fn(); });
}

// --- Queue ------------------------------------------------------------------------------------
const queueBody = document.getElementById("queue-body");

function sortedIncidents() {
  return [...state.incidents.values()].sort(
    (a, b) => a.priority_rank - b.priority_rank || String(a.opened_at).localeCompare(String(b.opened_at)),
  );
}

/** Which clock an incident is judged by: dispatch while pending, arrival on scene while units travel. */
function incidentTimer(incident, now = Date.now()) {
  const start = Date.parse(incident.call_arrived_at || incident.opened_at);
  const elapsed = (now - start) / 1000;
  let target = null;
  if (incident.status === "pending") target = targets.dispatch;
  else if (incident.status === "dispatched" || incident.status === "en_route") target = targets.onScene;
  return { elapsed, target, level: timerLevel(elapsed, target) };
}

function renderQueue() {
  const incidents = sortedIncidents();
  document.getElementById("queue-count").textContent = incidents.length;
  document.getElementById("queue-empty").hidden = incidents.length > 0;
  if (state.cursor && !state.incidents.has(state.cursor)) state.cursor = null;
  const rows = incidents.map((incident) => {
    const timer = incidentTimer(incident);
    return el(
      "tr",
      {
        tabindex: "0",
        "data-folio": incident.folio,
        "data-priority": incident.priority,
        "aria-selected": String(incident.folio === state.cursor),
        class: [incident.folio === state.selected ? "open" : "", `prio-row-${incident.priority}`].join(" "),
        onclick: () => openIncident(incident.folio),
        onfocus: () => { state.cursor = incident.folio; markCursor(); },
      },
      el("td", {}, el("span", { class: `prio prio-${incident.priority}` }, config.priorities[incident.priority] || incident.priority)),
      el("td", { class: "mono" }, incident.folio),
      el("td", {}, el("span", { class: "mono" }, incident.type_code), " ", incident.type_name,
        el("div", { class: "muted small" }, (incident.municipality && incident.municipality.name) || incident.address || "")),
      el("td", {}, el("span", { class: `status-pill st-${incident.status}` }, config.incident_statuses[incident.status] || incident.status)),
      el("td", {}, el("time", { class: `timer ${timer.level}`, "data-folio": incident.folio, "data-target-s": timer.target || "" }, duration(timer.elapsed))),
    );
  });
  queueBody.replaceChildren(...rows);
}

function markCursor() {
  for (const row of queueBody.rows) row.setAttribute("aria-selected", String(row.dataset.folio === state.cursor));
}

function moveCursor(step) {
  const folios = sortedIncidents().map((i) => i.folio);
  if (!folios.length) return;
  const index = folios.indexOf(state.cursor);
  const next = folios[Math.max(0, Math.min(folios.length - 1, index === -1 ? 0 : index + step))];
  state.cursor = next;
  const row = queueBody.querySelector(`tr[data-folio="${CSS.escape(next)}"]`);
  if (row) row.focus();
  markCursor();
}

function tickTimers() {
  const now = Date.now();
  for (const node of queueBody.querySelectorAll("time.timer")) {
    const incident = state.incidents.get(node.dataset.folio);
    if (!incident) continue;
    const timer = incidentTimer(incident, now);
    node.textContent = duration(timer.elapsed);
    node.className = `timer ${timer.level}`;
  }
  const detailTimer = document.getElementById("d-timer");
  const current = state.selected && state.incidents.get(state.selected);
  if (current) {
    const timer = incidentTimer(current, now);
    detailTimer.textContent = duration(timer.elapsed);
    detailTimer.className = `timer ${timer.level}`;
  }
}

// --- Detail -----------------------------------------------------------------------------------
let detailTimer = null;
let recsTimer = null;

async function openIncident(folio) {
  state.selected = folio;
  state.cursor = folio;
  state.detail = null;
  state.recs = null;
  renderQueue();
  document.getElementById("detail-empty").hidden = true;
  document.getElementById("detail-body").hidden = false;
  await refreshDetail();
  document.getElementById("detail").focus();
}

function touchDetail(folio, withRecs = false) {
  if (!folio || folio !== state.selected) return;
  clearTimeout(detailTimer);
  detailTimer = setTimeout(refreshDetail, 60);
  if (withRecs) scheduleRecs();
}

function scheduleRecs() {
  if (!config.can_dispatch || !state.selected) return;
  clearTimeout(recsTimer);
  recsTimer = setTimeout(loadRecommendations, 150);
}

async function refreshDetail() {
  const folio = state.selected;
  if (!folio) return;
  try {
    const detail = await api(`incidents/${encodeURIComponent(folio)}/`);
    if (folio !== state.selected) return;
    state.detail = detail;
    renderDetail();
    if (config.can_dispatch && state.recs === null) loadRecommendations();
  } catch (error) {
    showBanner(error.message, "error");
  }
}

function renderDetail() {
  const d = state.detail;
  if (!d) return;
  document.getElementById("d-folio").textContent = d.folio;
  const prio = document.getElementById("d-priority");
  prio.textContent = config.priorities[d.priority] || d.priority;
  prio.className = `prio prio-${d.priority}`;
  const status = document.getElementById("d-status");
  status.textContent = config.incident_statuses[d.status] || d.status;
  status.className = `status-pill st-${d.status}`;
  document.getElementById("d-type").textContent = `${d.type_code} ${d.type_name}`;
  document.getElementById("d-address").textContent = [d.address, d.municipality && d.municipality.name, d.state && d.state.name].filter(Boolean).join(" · ");
  const times = [
    ["call_arrived_at", t("t_arrived")], ["opened_at", t("t_opened")], ["first_dispatched_at", t("t_dispatched")],
    ["first_en_route_at", t("t_en_route")], ["first_on_scene_at", t("t_on_scene")], ["closed_at", t("t_closed")],
  ];
  document.getElementById("d-times").replaceChildren(
    ...times.flatMap(([key, label]) => [el("dt", {}, label), el("dd", { "data-time": key }, clock(d[key]))]),
  );
  document.getElementById("d-timeline").replaceChildren(
    ...d.timeline.slice().reverse().map((entry) =>
      el("li", { class: `tl-${entry.kind}` }, el("time", {}, clock(entry.at)), " ", el("strong", {}, entry.by || "—"), " ", entry.text)),
  );
  document.getElementById("d-calls").replaceChildren(
    ...d.calls.map((call) => el("li", {}, `${call.line} · ${clock(call.arrived_at)} · ${call.narrative || ""}`)),
  );
  const active = d.assignments.filter((a) => a.active);
  const assigned = document.getElementById("d-assigned");
  assigned.replaceChildren(
    ...(active.length ? active.map((a) => unitActions(state.units.get(a.unit_id) || { id: a.unit_id, callsign: a.callsign, status: a.unit_status }, "assigned")) : [el("li", { class: "muted" }, t("no_units"))]),
  );
  const closeForm = document.getElementById("close-form");
  if (closeForm) closeForm.hidden = d.status === "closed";
}

async function loadRecommendations() {
  const folio = state.selected;
  const box = document.getElementById("d-recs");
  if (!folio || !box) return;
  try {
    const recs = await api(`incidents/${encodeURIComponent(folio)}/recommendations`);
    if (folio !== state.selected) return;
    state.recs = recs;
    renderRecommendations();
  } catch (error) {
    state.recs = { requirements: [], suggested_unit_ids: [] };
    box.replaceChildren(el("p", { class: "muted" }, error.message));
  }
}

function renderRecommendations() {
  const box = document.getElementById("d-recs");
  const recs = state.recs;
  // Numbered 1..5: the suggested set first, then the other candidates of each requirement in turn.
  const seen = new Set();
  state.recList = [];
  const add = (candidate, capability) => {
    if (seen.has(candidate.unit_id) || state.recList.length >= 5) return;
    seen.add(candidate.unit_id);
    state.recList.push({ ...candidate, capability });
  };
  for (const requirement of recs.requirements) for (const c of requirement.suggested || []) add(c, requirement.capability);
  const depth = Math.max(0, ...recs.requirements.map((r) => r.candidates.length));
  for (let i = 0; i < depth; i++) {
    for (const requirement of recs.requirements) if (requirement.candidates[i]) add(requirement.candidates[i], requirement.capability);
  }
  if (!state.recList.length) {
    box.replaceChildren(el("p", { class: "muted" }, t("no_recommendations")));
    return;
  }
  const suggested = new Set(recs.suggested_unit_ids);
  const rows = state.recList.map((c, i) =>
    el("tr", { class: suggested.has(c.unit_id) ? "suggested" : "", "data-unit": c.unit_id },
      el("td", {}, el("kbd", {}, String(i + 1))),
      el("td", { class: "mono" }, c.callsign, suggested.has(c.unit_id) ? el("span", { class: "tag" }, t("suggested")) : null),
      el("td", {}, c.agency),
      el("td", {}, c.capability || "—"),
      el("td", {}, `${c.distance_km.toFixed(1)} km`),
      el("td", {}, duration(c.eta_s)),
      el("td", { class: c.position_age_s > 120 ? "stale" : "" }, duration(c.position_age_s)),
      el("td", {}, el("button", { type: "button", onclick: () => assign(c.unit_id) }, t("assign")))));
  box.replaceChildren(
    el("button", { type: "button", class: "primary", id: "assign-top", disabled: !recs.suggested_unit_ids.length || undefined, onclick: assignTop },
      t("assign_suggested"), " ", el("kbd", {}, "A")),
    el("table", { class: "recs-table" },
      el("thead", {}, el("tr", {}, ["#", t("unit"), t("agency"), t("capability"), t("distance"), t("eta"), t("position_age"), ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)),
  );
}

async function assign(unitId) {
  const folio = state.selected;
  if (!folio || !config.can_dispatch) return;
  try {
    await api(`incidents/${encodeURIComponent(folio)}/assignments`, { method: "POST", body: { unit_id: unitId } });
    state.recs = null;
    await refreshDetail();
  } catch (error) {
    showBanner(error.message, "error");
    loadRecommendations();
  }
}

function assignTop() {
  if (state.recs && state.recs.suggested_unit_ids.length) assign(state.recs.suggested_unit_ids[0]);
}

document.getElementById("note-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("note-text");
  const text = input.value.trim();
  if (!text || !state.selected) return;
  try {
    await api(`incidents/${encodeURIComponent(state.selected)}/notes`, { method: "POST", body: { text } });
    input.value = "";
  } catch (error) {
    showBanner(error.message, "error");
  }
});

const closeForm = document.getElementById("close-form");
if (closeForm) {
  closeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("close-disposition");
    if (!input.value.trim() || !state.selected) return;
    try {
      await api(`incidents/${encodeURIComponent(state.selected)}/close`, {
        method: "POST", body: { disposition: input.value.trim(), version: state.detail && state.detail.version },
      });
      input.value = "";
    } catch (error) {
      showBanner(error.message, "error");
    }
  });
}

// --- Unit board -------------------------------------------------------------------------------
const boardBody = document.getElementById("board-body");

function unitActions(unit, context) {
  const allowed = (config.unit_transitions[unit.status] || []).filter((s) => s !== "dispatched");
  return el(
    "li",
    {
      class: `unit st-${unit.status}`,
      tabindex: "0",
      "data-unit": unit.id,
      "data-status": unit.status,
      "data-context": context,
      "aria-label": `${unit.callsign}: ${config.unit_statuses[unit.status] || unit.status}`,
    },
    el("span", { class: "callsign mono" }, unit.callsign),
    el("span", { class: `status-pill st-${unit.status}` }, config.unit_statuses[unit.status] || unit.status),
    unit.incident ? el("span", { class: "mono small" }, unit.incident) : null,
    config.can_dispatch
      ? el("span", { class: "actions" }, allowed.sort((a, b) => STATUS_ORDER.indexOf(a) - STATUS_ORDER.indexOf(b)).map((status) =>
        el("button", { type: "button", class: "mini", "data-to": status, title: KEY_FOR_STATUS[status] ? `${t("key")} ${KEY_FOR_STATUS[status]}` : undefined },
          config.unit_statuses[status], KEY_FOR_STATUS[status] ? el("kbd", {}, KEY_FOR_STATUS[status]) : null)))
      : null,
  );
}

function renderBoard() {
  const byAgency = new Map();
  const totals = {};
  for (const unit of state.units.values()) {
    const agency = (unit.agency && unit.agency.name) || state.agencies.get(unit.agency_id) || "—";
    if (!byAgency.has(agency)) byAgency.set(agency, new Map());
    const statuses = byAgency.get(agency);
    if (!statuses.has(unit.status)) statuses.set(unit.status, []);
    statuses.get(unit.status).push(unit);
    totals[unit.status] = (totals[unit.status] || 0) + 1;
  }
  document.getElementById("board-summary").replaceChildren(
    ...STATUS_ORDER.filter((s) => totals[s]).map((s) => el("span", { class: `status-pill st-${s}` }, `${config.unit_statuses[s]}: ${totals[s]}`)),
  );
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("#board-body li.unit");
  const focusedId = focused ? focused.dataset.unit : null;
  const open = new Set([...boardBody.querySelectorAll("details[open]")].map((d) => d.dataset.agency));
  const firstRender = !boardBody.childElementCount;
  const sections = [...byAgency.keys()].sort().map((agency) => {
    const statuses = byAgency.get(agency);
    const count = [...statuses.values()].reduce((n, list) => n + list.length, 0);
    return el("details", { "data-agency": agency, open: firstRender || open.has(agency) || undefined },
      el("summary", {}, `${agency} (${count})`),
      STATUS_ORDER.filter((s) => statuses.has(s)).map((status) =>
        el("div", { class: "status-group", "data-status": status },
          el("h3", {}, `${config.unit_statuses[status]} · ${statuses.get(status).length}`),
          el("ul", {}, statuses.get(status).sort((a, b) => a.callsign.localeCompare(b.callsign)).map((u) => unitActions(u, "board"))))));
  });
  boardBody.replaceChildren(...sections);
  if (focusedId) {
    const again = boardBody.querySelector(`li.unit[data-unit="${focusedId}"]`);
    if (again) again.focus();
  }
  if (state.detail) renderDetail();
}

async function changeStatus(unitId, to) {
  const unit = state.units.get(unitId);
  try {
    const updated = await api(`units/${unitId}/status`, { method: "POST", body: { status: to, version: unit && unit.version } });
    if (updated && updated.id !== undefined) upsertUnit({ ...updated, agency_id: updated.agency ? updated.agency.id : unit && unit.agency_id });
  } catch (error) {
    showBanner(error.message, "error");
  }
}

function unitFromEvent(event) {
  const item = event.target.closest("li.unit");
  return item ? Number(item.dataset.unit) : null;
}

for (const container of [boardBody, document.getElementById("d-assigned")]) {
  container.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-to]");
    if (!button) return;
    const unitId = unitFromEvent(event);
    if (unitId !== null) changeStatus(unitId, button.dataset.to);
  });
  container.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.altKey || event.metaKey || !config.can_dispatch) return;
    const to = STATUS_KEYS[event.key.toLowerCase()];
    const unitId = unitFromEvent(event);
    if (!to || unitId === null || !event.target.matches("li.unit")) return;
    const unit = state.units.get(unitId);
    if (unit && (config.unit_transitions[unit.status] || []).includes(to)) {
      event.preventDefault();
      event.stopPropagation();
      changeStatus(unitId, to);
    }
  });
}

// --- Keyboard ---------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.key === "Escape") {
    if (typing(event)) event.target.blur();
    const row = state.cursor && queueBody.querySelector(`tr[data-folio="${CSS.escape(state.cursor)}"]`);
    (row || queueBody.rows[0] || document.getElementById("main")).focus();
    return;
  }
  if (typing(event)) return;
  if (event.target.closest && event.target.closest("li.unit") && STATUS_KEYS[event.key.toLowerCase()]) return;
  const key = event.key;
  if (key === "ArrowDown" || key === "j") { event.preventDefault(); moveCursor(1); }
  else if (key === "ArrowUp" || key === "k") { event.preventDefault(); moveCursor(-1); }
  else if (key === "Enter" && event.target.closest && event.target.closest("#queue-body tr")) {
    event.preventDefault();
    openIncident(event.target.closest("tr").dataset.folio);
  } else if ((key === "a" || key === "A") && state.selected) { event.preventDefault(); assignTop(); }
  else if (/^[1-5]$/.test(key) && state.selected && state.recList[Number(key) - 1]) {
    event.preventDefault();
    assign(state.recList[Number(key) - 1].unit_id);
  } else if ((key === "n" || key === "N") && state.selected) { event.preventDefault(); document.getElementById("note-text").focus(); }
  else if ((key === "c" || key === "C") && state.selected && closeForm) { event.preventDefault(); document.getElementById("close-disposition").focus(); }
});

// --- Start ------------------------------------------------------------------------------------
setInterval(tickTimers, 1000);
const client = new RealtimeClient({
  path: config.ws_path,
  streams: {
    console: { snapshot: loadConsoleSnapshot, apply: applyConsoleEvent },
    avl: { snapshot: async () => {}, apply: applyAvlEvent },
  },
  onState: setConnection,
  onNotice,
});
window.cadRealtime = client;
client.start();
