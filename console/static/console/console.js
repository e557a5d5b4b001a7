// Dispatcher console: incident queue with live timers, incident detail (location, recommendations, manual
// dispatch, assignments, notes, timeline, close/reopen), unit board and a live mini-map. Commands go
// through REST; the view stays current through the websocket (RealtimeClient). Panels are modules:
// location.js, dispatch.js, board.js, minimap.js — add new panels the same way.

import { createBoard, STATUS_KEYS } from "./board.js";
import { api, apiAll, bannerError, beep, clock, config, connectionStatus, duration, el, refuseBlank, showBanner, t, timerLevel, typing } from "./common.js";
import { createManualDispatch } from "./dispatch.js";
import { InterstatePanel, loadQueueFacts, queueBadges } from "./interstate.js";
import { createLocationPanel } from "./location.js";
import { createMiniMap } from "./minimap.js";
import { RealtimeClient } from "./realtime.js";

const TIMERS = config.lifecycle.timers; // status -> target seconds (incidents/lifecycle.py)

const state = {
  incidents: new Map(), // folio -> summary
  units: new Map(), // id -> unit
  agencies: new Map(), // id -> {id, code, name}
  cursor: null,
  selected: null,
  detail: null,
  recs: null,
  recList: [],
};
window.cadAlerts = [];
window.cadConsole = state;

// --- Connection ------------------------------------------------------------------------------
const { onState: setConnection, onNotice } = connectionStatus(document.getElementById("conn"));

// --- Panels -----------------------------------------------------------------------------------
const miniMap = createMiniMap(document.getElementById("minimap"), {
  onPick: (lat, lon) => {
    if (!state.detail || state.detail.status === "closed") return;
    document.getElementById("location-box").open = true;
    locationPanel.reverse(lat, lon);
  },
  onIncident: (folio) => openIncident(folio),
});
const locationPanel = createLocationPanel(document.getElementById("location-panel"), {
  getIncident: () => state.detail,
  onCandidates: (candidates, active) => miniMap.showCandidates(candidates, active),
  onPlaced: (detail) => { state.detail = detail; state.recs = null; renderDetail(); loadRecommendations(); miniMap.showCandidates([]); },
});
const manual = config.can_dispatch
  ? createManualDispatch(document.getElementById("manual-dispatch"), {
    getIncident: () => state.detail,
    onDispatched: () => { state.recs = null; refreshDetail(); },
  })
  : null;
const board = createBoard(document.getElementById("board"), {
  units: state.units,
  onStatus: (unitId, to) => changeStatus(unitId, to),
  onPick: (unitId) => {
    if (manual && state.detail && state.detail.status !== "closed") manual.add(unitId);
  },
});

// --- Snapshots --------------------------------------------------------------------------------
async function loadIncidents() {
  const [incidents] = await Promise.all([
    apiAll("incidents/?open=true&limit=500"), // every open incident, page by page
    loadQueueFacts().catch((error) => console.error("interstate queue facts", error)), // tags only: the queue shows without them
  ]);
  state.incidents.clear();
  for (const incident of incidents) state.incidents.set(incident.folio, incident);
  renderQueue();
  miniMap.setIncidents(state.incidents.values(), state.selected);
  if (state.selected) refreshDetail();
}

async function loadUnits() {
  const units = await api("units/");
  state.units.clear();
  for (const unit of units) {
    state.units.set(unit.id, unit);
    if (unit.agency) state.agencies.set(unit.agency.id, unit.agency);
  }
  board.refreshOptions();
  board.render();
  miniMap.setUnits(state.units.values());
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
    case "incident.reopened":
      upsertIncident(payload);
      touchDetail(payload.folio, true);
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
    case "interstate.flagged":
    case "interstate.escalation":
      interstate.applyEvent(envelope);
      scheduleRender(renderQueue);
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
  scheduleRender(() => miniMap.setUnits(state.units.values()));
}

function upsertIncident(summary) {
  if (!summary || !summary.folio) return;
  const current = state.incidents.get(summary.folio);
  if (current && current.version > summary.version) return;
  if (summary.status === "closed") state.incidents.delete(summary.folio);
  else state.incidents.set(summary.folio, { ...(current || {}), ...summary });
  scheduleRender(renderQueue);
  scheduleRender(() => miniMap.setIncidents(state.incidents.values(), state.selected));
}

function upsertUnit(summary) {
  if (!summary || summary.id === undefined) return;
  const current = state.units.get(summary.id) || {};
  if (current.version > summary.version) return;
  const agency = current.agency || state.agencies.get(summary.agency_id) || null;
  state.units.set(summary.id, { ...current, ...summary, agency });
  scheduleRender(board.render);
  scheduleRender(() => miniMap.setUnits(state.units.values()));
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

/** The clock an incident is judged by, from its lifecycle status (incidents/lifecycle.py TIMERS); none while
 * another centre has taken it over (that centre runs the dispatch clock). */
function incidentTimer(incident, now = Date.now()) {
  const start = Date.parse(incident.timer_since || incident.call_arrived_at || incident.opened_at);
  const elapsed = (now - start) / 1000;
  const target = incident.handled_by_center ? null : TIMERS[incident.status] || null;
  return { elapsed, target, level: timerLevel(elapsed, target) };
}

function placeName(incident) {
  const m = incident.municipality;
  return (m && (m.name || m)) || incident.address || "";
}

function renderQueue() {
  const incidents = sortedIncidents();
  document.getElementById("queue-count").textContent = incidents.length;
  document.getElementById("queue-empty").hidden = incidents.length > 0;
  if (state.cursor && !state.incidents.has(state.cursor)) state.cursor = null;
  const focusedFolio = document.activeElement && document.activeElement.closest && document.activeElement.closest("#queue-body tr")
    ? document.activeElement.closest("tr").dataset.folio : null;
  const rows = incidents.map((incident) => {
    const timer = incidentTimer(incident);
    return el(
      "tr",
      {
        tabindex: "0",
        "data-folio": incident.folio,
        "data-priority": incident.priority,
        "data-status": incident.status,
        "aria-selected": String(incident.folio === state.cursor),
        class: [incident.folio === state.selected ? "open" : "", `prio-row-${incident.priority}`].join(" "),
        onclick: () => openIncident(incident.folio),
        onfocus: () => { state.cursor = incident.folio; markCursor(); },
      },
      el("td", {}, el("span", { class: `prio prio-${incident.priority}` }, config.priorities[incident.priority] || incident.priority)),
      el("td", { class: "mono nowrap" }, incident.folio),
      el("td", {}, el("span", { class: "tname", title: `${incident.type_code} ${incident.type_name}` }, el("span", { class: "mono" }, incident.type_code), " ", incident.type_name),
        el("div", { class: "muted small" }, incident.lat == null ? t("no_location") : placeName(incident)),
        el("div", { class: "interstate-tags" }, queueBadges(incident))),
      el("td", {}, el("span", { class: `status-pill st-${incident.status}` }, config.incident_statuses[incident.status] || incident.status),
        incident.handled_by_center ? el("div", { class: "muted small handled-by" }, t("handled_by", { peer: incident.handled_by_center })) : null),
      el("td", {}, el("time", { class: `timer ${timer.level}`, "data-folio": incident.folio, "data-target-s": timer.target || "" }, duration(timer.elapsed))),
    );
  });
  queueBody.replaceChildren(...rows);
  if (focusedFolio) {
    const again = queueBody.querySelector(`tr[data-folio="${CSS.escape(focusedFolio)}"]`);
    (again || queueBody.rows[0] || document.getElementById("detail")).focus();
  }
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
  const current = state.detail;
  if (current) {
    const timer = current.status === "closed" ? { elapsed: 0, level: "neutral" } : incidentTimer(current, now);
    detailTimer.textContent = current.status === "closed" ? "" : duration(timer.elapsed);
    detailTimer.className = `timer ${timer.level}`;
    detailTimer.dataset.targetS = timer.target || "";
  }
}

// --- Detail -----------------------------------------------------------------------------------
const interstate = new InterstatePanel(document.getElementById("d-interstate-body"));
let detailTimer = null;
let recsTimer = null;

async function openIncident(folio) {
  history.replaceState(null, "", `?folio=${encodeURIComponent(folio)}`); // a reload reopens it
  state.selected = folio;
  state.cursor = folio;
  state.detail = null;
  state.recs = null;
  renderQueue();
  document.getElementById("detail-empty").hidden = true;
  document.getElementById("detail-body").hidden = false;
  if (manual) manual.reset();
  interstate.load(folio);
  await refreshDetail();
  locationPanel.reset(state.detail);
  document.getElementById("location-box").open = Boolean(state.detail && state.detail.lat == null);
  miniMap.setIncidents(state.incidents.values(), folio);
  if (state.detail && state.detail.lat != null) miniMap.focus(state.detail.lat, state.detail.lon);
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
    bannerError(error);
  }
}

function jurisdictionText(d) {
  return [d.municipality && d.municipality.name, d.state && d.state.name].filter(Boolean).join(", ");
}

function renderDetail() {
  const d = state.detail;
  if (!d) return;
  const closed = d.status === "closed";
  document.getElementById("d-folio").textContent = d.folio;
  const prio = document.getElementById("d-priority");
  prio.textContent = config.priorities[d.priority] || d.priority;
  prio.className = `prio prio-${d.priority}`;
  const status = document.getElementById("d-status");
  status.textContent = [config.incident_statuses[d.status] || d.status,
    d.handled_by_center ? t("handled_by", { peer: d.handled_by_center }) : ""].filter(Boolean).join(" · ");
  status.className = `status-pill st-${d.status}`;
  status.dataset.status = d.status;
  document.getElementById("d-outside").hidden = !d.outside_service_area;
  document.getElementById("d-type").textContent = `${d.type_code} ${d.type_name}`;
  document.getElementById("d-address").textContent = [d.address, jurisdictionText(d)].filter(Boolean).join(" · ")
    || (d.lat == null ? t("no_location") : "");
  document.getElementById("d-location-state").textContent = d.lat == null
    ? t("no_location")
    : `${d.lat.toFixed(5)}, ${d.lon.toFixed(5)}${d.location_source ? ` · ${config.location_sources[d.location_source] || d.location_source}` : ""}`;
  document.getElementById("d-narrative").textContent = d.narrative || "";
  document.getElementById("d-calls").replaceChildren(
    ...d.calls.map((call) => el("li", {}, `${call.line} · ${clock(call.arrived_at)}`,
      call.caller_name ? ` · ${call.caller_name}` : "", call.callback_number ? ` · ${call.callback_number}` : "")),
  );
  const times = [
    ["call_arrived_at", t("t_arrived")], ["opened_at", t("t_opened")], ["first_dispatched_at", t("t_dispatched")],
    ["first_en_route_at", t("t_en_route")], ["first_on_scene_at", t("t_on_scene")], ["reopened_at", t("t_reopened")], ["closed_at", t("t_closed")],
  ];
  document.getElementById("d-times").replaceChildren(
    ...times.filter(([key]) => key !== "reopened_at" || d.reopened_at)
      .flatMap(([key, label]) => [el("dt", {}, label), el("dd", { "data-time": key }, clock(d[key]))]),
  );
  document.getElementById("d-timeline").replaceChildren(
    ...d.timeline.slice().reverse().map((entry) =>
      el("li", { class: `tl-${entry.kind}` }, el("time", {}, clock(entry.at)), " ", el("strong", {}, entry.by || "—"), " ", entry.text)),
  );
  const active = d.assignments.filter((a) => a.active);
  // A live update re-renders the list: the unit the dispatcher is on keeps the focus (its next key is not lost).
  const focusedItem = document.activeElement && document.activeElement.closest
    ? document.activeElement.closest("#d-assigned li.unit") : null;
  const focusedUnit = focusedItem ? focusedItem.dataset.unit : null;
  const assigned = document.getElementById("d-assigned");
  assigned.replaceChildren(
    ...(active.length ? active.map((a) => assignedUnit(state.units.get(a.unit_id) || { id: a.unit_id, callsign: a.callsign, status: a.unit_status })) : [el("li", { class: "muted" }, t("no_units"))]),
  );
  if (focusedUnit) {
    const again = assigned.querySelector(`li.unit[data-unit="${focusedUnit}"]`);
    if (again) again.focus();
  }
  const dispatchArea = document.getElementById("dispatch-area");
  if (dispatchArea) dispatchArea.hidden = closed;
  const closedNote = document.getElementById("closed-note");
  if (closedNote) closedNote.hidden = !closed;
  const closeForm = document.getElementById("close-form");
  if (closeForm) closeForm.hidden = closed;
  const reopenForm = document.getElementById("reopen-form");
  if (reopenForm) reopenForm.hidden = !closed;
  document.getElementById("location-box").hidden = closed;
  tickTimers();
}

function assignedUnit(unit) {
  const allowed = (config.unit_transitions[unit.status] || []).filter((s) => s !== "dispatched");
  return el("li", {
    class: `unit st-${unit.status}`, tabindex: "0", "data-unit": unit.id, "data-status": unit.status, "data-context": "assigned",
    "aria-label": `${unit.callsign}: ${config.unit_statuses[unit.status] || unit.status}`,
  },
  el("span", { class: "callsign mono" }, unit.callsign),
  el("span", { class: `status-pill st-${unit.status}` }, config.unit_statuses[unit.status] || unit.status),
  config.can_dispatch ? el("span", { class: "actions" }, allowed.map((status) =>
    el("button", { type: "button", class: "mini", "data-to": status }, config.unit_statuses[status]))) : null);
}

async function loadRecommendations() {
  const folio = state.selected;
  const box = document.getElementById("d-recs");
  // Without the detail yet (an event while it loads), refreshDetail asks once it has it.
  if (!folio || !box || !state.detail || state.detail.status === "closed") return;
  if (state.detail.lat == null) {
    // Nothing to rank units by: say so without asking (the API answers 400, a console error each time).
    state.recs = { requirements: [], suggested_unit_ids: [] };
    state.recList = [];
    box.replaceChildren(el("p", { class: "muted" }, t("recs_no_location")));
    return;
  }
  try {
    const recs = await api(`incidents/${encodeURIComponent(folio)}/recommendations`);
    if (folio !== state.selected) return;
    state.recs = recs;
    renderRecommendations();
  } catch (error) {
    state.recs = { requirements: [], suggested_unit_ids: [] };
    state.recList = [];
    box.replaceChildren(el("p", { class: "muted" }, error.message));
  }
}

function limitText(c) {
  if (!c.beyond_limit) return null;
  return el("span", { class: "tag warn", title: t(`beyond_${c.limit_reason}`) }, t(`beyond_${c.limit_reason}`));
}

function renderRecommendations() {
  const box = document.getElementById("d-recs");
  const recs = state.recs;
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
  // Another centre took the incident over: nothing is suggested (its units cover the plan); say why.
  const handled = recs.handled_by_center
    ? el("p", { class: "muted recs-handled-by", role: "note" }, t("recs_handled_by", { peer: recs.handled_by_center }))
    : null;
  if (!state.recList.length) {
    box.replaceChildren(...[handled, el("p", { class: "muted" }, t("no_recommendations"))].filter(Boolean));
    return;
  }
  const incidentPlace = recs.incident_jurisdiction && recs.incident_jurisdiction.municipality_cvegeo;
  const suggested = new Set(recs.suggested_unit_ids);
  const rows = state.recList.map((c, i) => {
    const place = c.jurisdiction && c.jurisdiction.municipality;
    const other = incidentPlace && c.jurisdiction && c.jurisdiction.municipality_cvegeo !== incidentPlace;
    return el("tr", { class: [suggested.has(c.unit_id) ? "suggested" : "", c.beyond_limit ? "beyond" : ""].join(" "), "data-unit": c.unit_id },
      el("td", {}, el("kbd", {}, String(i + 1))),
      el("td", {}, el("span", { class: "mono nowrap callsign" }, c.callsign), suggested.has(c.unit_id) ? el("span", { class: "tag" }, t("suggested")) : null,
        el("div", { class: "muted small" }, c.agency)),
      el("td", {}, c.capability ? (config.capabilities[c.capability] || c.capability) : "—"),
      el("td", { class: "nowrap" }, `${c.distance_km.toFixed(1)} km`, el("div", {}, duration(c.eta_s)), limitText(c)),
      el("td", { class: other ? "other-place" : "" }, place || "—", other ? el("span", { class: "tag" }, t("other_municipality")) : null),
      el("td", {}, el("button", { type: "button", class: "mini", onclick: () => assign(c.unit_id) }, t("assign"))));
  });
  const noneInLimit = recs.requirements.filter((r) => r.only_beyond_limit).map((r) => config.capabilities[r.capability] || r.capability || t("any_unit"));
  const parts = [
    el("button", { type: "button", class: "primary", id: "assign-top", disabled: !recs.suggested_unit_ids.length || undefined, onclick: assignTop },
      t("assign_suggested"), " ", el("kbd", {}, "A")),
    el("table", { class: "recs-table" },
      el("thead", {}, el("tr", {}, ["#", t("unit"), t("capability"), `${t("distance")} / ${t("eta")}`, t("jurisdiction"), ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)),
  ];
  if (handled) parts.splice(1, 0, handled);
  if (noneInLimit.length) {
    parts.splice(1, 0, el("p", { class: "warn-text", role: "note" },
      t("none_within_limit", { caps: noneInLimit.join(", "), min: Math.round(recs.limits.max_eta_s / 60), km: recs.limits.max_distance_km })));
  }
  box.replaceChildren(...parts);
}

async function assign(unitId) {
  const folio = state.selected;
  if (!folio || !config.can_dispatch) return;
  try {
    await api(`incidents/${encodeURIComponent(folio)}/assignments`, { method: "POST", body: { unit_id: unitId } });
    state.recs = null;
    await refreshDetail();
  } catch (error) {
    bannerError(error);
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
  if (!state.selected || refuseBlank(input)) return;
  try {
    await api(`incidents/${encodeURIComponent(state.selected)}/notes`, { method: "POST", body: { text } });
    input.value = "";
  } catch (error) {
    bannerError(error);
  }
});

/** The close and reopen forms: one text field, one POST that answers the new detail (with its version). */
function lifecycleForm(formId, inputId, action, field, after) {
  const form = document.getElementById(formId);
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById(inputId);
    if (!state.selected || refuseBlank(input)) return;
    try {
      state.detail = await api(`incidents/${encodeURIComponent(state.selected)}/${action}`, {
        method: "POST", body: { [field]: input.value.trim(), version: state.detail && state.detail.version },
      });
      input.value = "";
      if (after) after();
      renderDetail();
      document.getElementById("detail").focus();
    } catch (error) {
      bannerError(error);
    }
  });
}
lifecycleForm("close-form", "close-disposition", "close", "disposition");
lifecycleForm("reopen-form", "reopen-reason", "reopen", "reason", () => { state.recs = null; loadRecommendations(); });

// --- Unit status ------------------------------------------------------------------------------
async function changeStatus(unitId, to) {
  const unit = state.units.get(unitId);
  try {
    const updated = await api(`units/${unitId}/status`, { method: "POST", body: { status: to, version: unit && unit.version } });
    if (updated && updated.id !== undefined) upsertUnit({ ...updated, agency_id: updated.agency ? updated.agency.id : unit && unit.agency_id });
  } catch (error) {
    bannerError(error);
  }
}

const assignedList = document.getElementById("d-assigned");
assignedList.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-to]");
  const item = event.target.closest("li.unit");
  if (button && item) changeStatus(Number(item.dataset.unit), button.dataset.to);
});
assignedList.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.altKey || event.metaKey || !config.can_dispatch || !event.target.matches("li.unit")) return;
  const to = STATUS_KEYS[event.key.toLowerCase()];
  const unit = state.units.get(Number(event.target.dataset.unit));
  if (to && unit && (config.unit_transitions[unit.status] || []).includes(to)) {
    event.preventDefault();
    event.stopPropagation();
    changeStatus(unit.id, to);
  }
});

// --- Keyboard ---------------------------------------------------------------------------------
const help = document.getElementById("help");
document.getElementById("help-open").addEventListener("click", () => help.showModal());

function focusField(id) {
  const node = document.getElementById(id);
  if (node && !node.closest("[hidden]")) { node.focus(); return true; }
  return false;
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.key === "Escape") {
    if (help.open) return; // the dialog closes itself
    if (typing(event)) event.target.blur();
    const row = state.cursor && queueBody.querySelector(`tr[data-folio="${CSS.escape(state.cursor)}"]`);
    (row || queueBody.rows[0] || document.getElementById("detail")).focus();
    return;
  }
  if (typing(event)) return;
  if (event.target.closest && event.target.closest("li.unit") && (STATUS_KEYS[event.key.toLowerCase()] || event.key === "Enter" || event.key === ".")) return;
  const key = event.key;
  const open = Boolean(state.detail);
  const closed = open && state.detail.status === "closed";
  let handled = true;
  if (key === "ArrowDown" || key === "j") moveCursor(1);
  else if (key === "ArrowUp" || key === "k") moveCursor(-1);
  else if (key === "Enter" && event.target.closest && event.target.closest("#queue-body tr")) openIncident(event.target.closest("tr").dataset.folio);
  else if (key === "?") help.showModal();
  else if (key === "/") board.focusSearch();
  else if ((key === "a" || key === "A") && open && !closed) assignTop();
  else if (/^[1-5]$/.test(key) && open && !closed && state.recList[Number(key) - 1]) assign(state.recList[Number(key) - 1].unit_id);
  else if ((key === "u" || key === "U") && open && !closed) { document.getElementById("location-box").open = true; locationPanel.focus(); }
  else if ((key === "m" || key === "M") && open && !closed && manual) manual.focus();
  else if ((key === "n" || key === "N") && open) focusField("note-text");
  else if ((key === "c" || key === "C") && open && !closed) focusField("close-disposition");
  else if ((key === "r" || key === "R") && closed) focusField("reopen-reason");
  else if (state.selected && interstate.handleKey(event)) handled = true;
  else handled = false;
  if (handled) event.preventDefault();
});

// Focus never falls back to the page body: when the focused node disappears (a re-render), the
// detail panel (or the queue) takes it.
document.addEventListener("focusout", () => {
  setTimeout(() => {
    if (document.activeElement && document.activeElement !== document.body) return;
    if (help.open) return;
    const fallback = state.detail ? document.getElementById("detail")
      : queueBody.querySelector(`tr[data-folio="${CSS.escape(state.cursor || "")}"]`) || queueBody.rows[0] || document.getElementById("main");
    fallback.focus();
  }, 0);
});

// --- Start ------------------------------------------------------------------------------------
setInterval(tickTimers, 1000);
setInterval(() => loadUnits().catch(() => {}), 60_000); // jurisdictions follow AVL moves
const client = new RealtimeClient({
  path: config.ws_path,
  streams: {
    console: { snapshot: loadConsoleSnapshot, apply: applyConsoleEvent },
    avl: { snapshot: async () => {}, apply: applyAvlEvent },
  },
  onState: setConnection,
  onNotice,
  heartbeatS: config.heartbeat_s,
});
window.cadRealtime = client;
client.start();
const wanted = new URLSearchParams(window.location.search).get("folio");
if (wanted) openIncident(wanted);
