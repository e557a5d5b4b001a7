// Call intake (9-1-1 and 089): arrival timer, CNIE type-ahead, location by coordinates, address or map
// click, inline duplicate suggestion (Alt+V links), Ctrl+Enter submits, F2 starts a new call.

import { api, config, connectionStatus, duration, el, t, timerLevel, typing } from "./common.js";
import { InterstatePanel } from "./interstate.js";
import { createMap } from "./map.js";
import { RealtimeClient } from "./realtime.js";

const form = document.getElementById("intake-form");
const line = config.line;
const anonymous = line === "089";
const targetS = Number(document.body.dataset.targetMinimumDataS);
const $ = (id) => document.getElementById(id);

// --- Arrival timer ----------------------------------------------------------------------------
let arrivedAt = new Date();
let stoppedAt = null;
const timerNode = $("call-timer");
function tick() {
  const seconds = ((stoppedAt || new Date()) - arrivedAt) / 1000;
  timerNode.textContent = duration(seconds);
  timerNode.className = `timer ${timerLevel(seconds, targetS)}`;
  timerNode.dateTime = `PT${Math.floor(seconds)}S`;
}
setInterval(tick, 500);
tick();

// --- CNIE type-ahead --------------------------------------------------------------------------
const search = $("type-search");
const list = $("type-list");
const codeInput = $("incident_type_code");
let options = [];
let active = -1;
let searchSeq = 0;
let chosenType = null;

async function runSearch() {
  const q = search.value.trim();
  const mine = ++searchSeq;
  if (!q) { closeList(); return; }
  try {
    const found = await api(`incident-types/?q=${encodeURIComponent(q)}&limit=12`);
    if (mine !== searchSeq) return;
    options = found;
    active = found.length ? 0 : -1;
    renderList();
  } catch (error) {
    showError(error);
  }
}

function renderList() {
  list.replaceChildren(...options.map((type, i) =>
    el("li", {
      role: "option", id: `type-opt-${i}`, "aria-selected": String(i === active), "data-code": type.code,
      onmousedown: (event) => { event.preventDefault(); choose(i); },
    }, el("span", { class: "mono" }, type.code), " ", type.name, " ", el("span", { class: `prio prio-${type.priority}` }, config.priorities[type.priority] || type.priority))));
  list.hidden = !options.length;
  search.setAttribute("aria-expanded", String(!list.hidden));
  if (active >= 0) search.setAttribute("aria-activedescendant", `type-opt-${active}`);
  else search.removeAttribute("aria-activedescendant");
}

function closeList() {
  options = [];
  active = -1;
  renderList();
}

function choose(i) {
  const type = options[i];
  if (!type) return;
  chosenType = type;
  codeInput.value = type.code;
  search.value = `${type.code} ${type.name}`;
  $("type-chosen").textContent = t("chosen_type", { code: type.code, name: type.name, priority: config.priorities[type.priority] || type.priority });
  if (type.improcedente) $("disposition").value = "improcedente";
  else if ($("disposition").value === "improcedente") $("disposition").value = "new_incident";
  syncDisposition();
  closeList();
  checkDuplicates();
  $("address").focus();
}

let searchTimer = null;
search.addEventListener("input", () => {
  chosenType = null;
  codeInput.value = "";
  $("type-chosen").textContent = "";
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 120);
});
search.addEventListener("keydown", (event) => {
  if (event.key === "ArrowDown" && options.length) { event.preventDefault(); active = (active + 1) % options.length; renderList(); }
  else if (event.key === "ArrowUp" && options.length) { event.preventDefault(); active = (active - 1 + options.length) % options.length; renderList(); }
  else if (event.key === "Enter" && !event.ctrlKey && options.length && active >= 0) { event.preventDefault(); choose(active); }
  else if (event.key === "Escape") closeList();
});
search.addEventListener("blur", () => setTimeout(closeList, 150));

// --- Location and map -------------------------------------------------------------------------
const latInput = $("lat");
const lonInput = $("lon");
const map = createMap($("intake-map"), {
  onPick: (lat, lon) => {
    latInput.value = lat.toFixed(6);
    lonInput.value = lon.toFixed(6);
    $("location_source").value = "map";
    checkDuplicates();
  },
});

/** The typed point when both values are plausible (for the map and the duplicate check). */
function coordinates() {
  const lat = Number.parseFloat(latInput.value.replace(",", "."));
  const lon = Number.parseFloat(lonInput.value.replace(",", "."));
  if (Number.isFinite(lat) && Number.isFinite(lon) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180) return { lat, lon };
  return null;
}

/** What goes to the API: the typed values as numbers (or as typed, so the server names the problem), never
 * a silent null for something the call-taker wrote. */
function typedCoordinate(input) {
  const raw = input.value.trim().replace(",", ".");
  if (!raw) return null;
  const value = Number(raw);
  return Number.isFinite(value) ? value : raw;
}
for (const input of [latInput, lonInput]) {
  input.addEventListener("change", () => {
    const point = coordinates();
    if (point) {
      map.mark(point.lat, point.lon);
      if (!$("location_source").value) $("location_source").value = "caller";
    }
    checkDuplicates();
  });
}

// --- Duplicates -------------------------------------------------------------------------------
let duplicates = [];
let dupSeq = 0;
async function checkDuplicates() {
  const point = coordinates();
  const box = $("duplicates");
  if (!point || !codeInput.value) { box.hidden = true; duplicates = []; return; }
  const mine = ++dupSeq;
  try {
    const found = await api(`calls/duplicates?lat=${point.lat}&lon=${point.lon}&type=${encodeURIComponent(codeInput.value)}`);
    if (mine !== dupSeq) return;
    duplicates = found.candidates || [];
  } catch {
    duplicates = [];
  }
  box.hidden = !duplicates.length;
  $("dup-list").replaceChildren(...duplicates.slice(0, 5).map((c, i) =>
    el("li", { "data-folio": c.folio },
      el("strong", { class: "mono" }, c.folio), " · ", c.type_code, " ", c.type_name, " · ",
      t("meters_away", { m: Math.round(c.distance_m) }), " · ", config.incident_statuses[c.status] || c.status, " ",
      el("button", { type: "button", class: "mini", onclick: () => linkTo(c.folio) }, t("link"), i === 0 ? el("kbd", {}, "Alt+V") : null))));
}

function linkTo(folio) {
  $("disposition").value = "linked";
  $("incident").value = folio;
  syncDisposition();
  $("submit-call").focus();
}

function syncDisposition() {
  $("link-field").hidden = $("disposition").value !== "linked";
}
$("disposition").addEventListener("change", syncDisposition);

// --- Submit -----------------------------------------------------------------------------------
function clearErrors() {
  $("form-error").hidden = true;
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showError(error) {
  const box = $("form-error");
  // The session ended (in another tab, say): say what to do, not DRF's "credenciales … no se proveyeron".
  const ended = error.status === 401 || error.code === "not_authenticated";
  box.textContent = ended ? t("conn_ended_banner") : error.message || String(error);
  box.hidden = false;
  let first = null;
  for (const [field, messages] of Object.entries(error.fields || {})) {
    const slot = $(`err-${field}`);
    if (slot) slot.textContent = [].concat(messages).join(" ");
    const input = field === "incident_type_code" ? search : $(field);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
  }
  (first || box).focus?.();
}

// One Idempotency-Key per call form: a retry after a cut connection returns the original answer instead of
// recording the call twice. A new form (F2) gets a new key. (randomUUID needs HTTPS; getRandomValues not.)
function newKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
let idempotencyKey = newKey();
let submitting = false;
let dirty = false; // something typed since the last registered call
let confirmOutside = false;
form.addEventListener("input", () => { dirty = true; });
for (const input of [latInput, lonInput]) input.addEventListener("input", () => { confirmOutside = false; });

function offer(label, key, action) {
  const button = el("button", { type: "button", class: "mini", onclick: action }, label, " ", el("kbd", {}, key));
  $("form-error").append(" ", button);
  return button;
}

async function submit() {
  if (submitting) return;
  if (!dirty) {
    const result = $("result");
    if (!result.hidden) { result.focus(); return; } // just registered: Ctrl+Enter again does nothing
  }
  clearErrors();
  const point = coordinates();
  const typedLat = typedCoordinate(latInput);
  const typedLon = typedCoordinate(lonInput);
  const body = {
    line,
    channel: "voice",
    arrived_at: arrivedAt.toISOString(),
    answered_at: arrivedAt.toISOString(),
    lat: typedLat,
    lon: typedLon,
    confirm_outside_area: confirmOutside,
    address: $("address").value.trim(),
    location_source: point || typedLat !== null || $("address").value.trim() ? $("location_source").value || "caller" : "",
    narrative: $("narrative").value.trim(),
    incident_type_code: codeInput.value || null,
    disposition: $("disposition").value,
  };
  if (body.disposition === "linked") body.incident = $("incident").value.trim();
  if (!anonymous) {
    body.caller_name = $("caller_name").value.trim() || null;
    body.callback_number = $("callback_number").value.trim() || null;
  }
  submitting = true;
  $("submit-call").disabled = true;
  try {
    const created = await api("calls/", { method: "POST", body, headers: { "Idempotency-Key": idempotencyKey } });
    const folio = created.call.incident;
    resetForm();
    const result = $("result");
    result.hidden = false;
    result.dataset.folio = folio || "";
    result.textContent = folio
      ? (body.disposition === "linked" ? t("call_linked", { folio }) : t("incident_created", { folio }))
      : t("call_recorded");
    if (created.location && !created.location.inside_service_area) result.append(" ", t("outside_area_recorded"));
    result.append(" ", el("kbd", {}, "F2"), " ", t("next_call"));
    if (folio && body.disposition !== "linked") offerInterstate(folio);
    window.cadLastCall = created;
    dirty = false;
    search.focus();
  } catch (error) {
    showError(error);
    if (error.code === "outside_service_area") {
      offer(t("confirm_outside"), "Alt+O", () => { confirmOutside = true; submit(); }).focus();
    } else if (error.code === "coordinates_swapped") {
      offer(t("swap_coordinates"), "Alt+I", swapCoordinates);
    }
  } finally {
    submitting = false;
    $("submit-call").disabled = false;
  }
}

// --- Interstate: a call located in (or near) a peer centre's area offers X escalate / V notify ----------
const interstateBox = el("div", { class: "interstate interstate-offer", id: "interstate-offer" });
const interstate = new InterstatePanel(interstateBox, { compact: true });

// The saved call's escalation follows its delivery live (sent, accepted by the peer, rejected…), as on the
// console: the centre's console stream, of which this page applies the interstate events only.
const live = new RealtimeClient({
  path: config.ws_path,
  streams: {
    console: {
      snapshot: async () => { if (interstate.folio) await interstate.load(interstate.folio); },
      apply: (envelope) => { interstate.applyEvent(envelope); },
    },
  },
  ...connectionStatus($("conn")),
  heartbeatS: config.heartbeat_s,
  leaveWhenSessionEnds: false, // a call half typed is not thrown away
});
live.start();

async function offerInterstate(folio) {
  $("result").append(interstateBox);
  const offers = await interstate.load(folio);
  // The call-taker has not started the next call yet: the escalate button takes the focus (X, V or Enter).
  if (offers.length && document.activeElement === search && !search.value) interstate.focusOffer();
}

function swapCoordinates() {
  [latInput.value, lonInput.value] = [lonInput.value, latInput.value];
  confirmOutside = false;
  clearErrors();
  latInput.focus();
}

/** Empty the form for the next call (the result of the last one stays visible until F2). */
function resetForm() {
  idempotencyKey = newKey();
  form.reset();
  clearErrors();
  $("duplicates").hidden = true;
  $("type-chosen").textContent = "";
  codeInput.value = "";
  chosenType = null;
  duplicates = [];
  syncDisposition();
  map.clear();
  confirmOutside = false;
  arrivedAt = new Date();
  stoppedAt = null;
  tick();
}

function newCall() {
  resetForm();
  interstate.clear();
  $("result").hidden = true;
  dirty = false;
  search.focus();
}

form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
$("new-call").addEventListener("click", newCall);
document.addEventListener("keydown", (event) => {
  if (event.key === "F2") { event.preventDefault(); newCall(); }
  else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
  else if (event.altKey && (event.key === "v" || event.key === "V" || event.code === "KeyV")) {
    event.preventDefault();
    if (duplicates.length) linkTo(duplicates[0].folio);
  } else if (event.altKey && event.code === "KeyO") {
    event.preventDefault();
    confirmOutside = true;
    submit();
  } else if (event.altKey && event.code === "KeyI") {
    event.preventDefault();
    swapCoordinates();
  } else if (!event.ctrlKey && !event.altKey && !event.metaKey && !typing(event) && interstate.handleKey(event)) {
    event.preventDefault();
  }
});
window.cadIntakeReady = true;
