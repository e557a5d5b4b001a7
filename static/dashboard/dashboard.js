// Supervisor live map: units and incidents as canvas circle markers (thousands stay smooth), kept current
// over the console websocket (console + avl streams), with filters, a radius query and unit tracks.
//
// Test hooks: window.cadMap = {map, units, incidents, ready, counts(), position(id), avlMessages, lastAvl}
// and data-units / data-incidents on #map (markers drawn).

import { RealtimeClient } from "../console/realtime.js";

const config = JSON.parse(document.getElementById("map-config").textContent);
const T = config.text;
const STALE_MS = config.staleSeconds * 1000;
const ASSIGNED = new Set(["dispatched", "en_route", "on_scene", "transporting", "at_hospital"]);
const IDLE = new Set(["out_of_service", "off_duty"]);
const PRIORITY_COLOURS = { ALTA: "#dc2626", MEDIA: "#f59e0b", BAJA: "#facc15" };
const AGENCY_COLOURS = {
  police: "#3b82f6",
  ambulance: "#f8fafc",
  fire: "#f97316",
  civil_protection: "#a855f7",
  national_guard: "#22c55e",
  other: "#94a3b8",
};

// --- Map ---------------------------------------------------------------------------------------
const renderer = L.canvas({ padding: 0.3 });
const map = L.map("map", { preferCanvas: true, renderer, center: config.center, zoom: config.zoom });
map.attributionControl.setPrefix(false);
for (const tile of config.tiles) L.tileLayer(tile.url, tile.options || {}).addTo(map);
// Without a tile server the boundaries are the base map: municipalities get their names as labels
// (shown from zoom 10 on, so the state view stays readable).
const MUNICIPALITY_LABEL_ZOOM = 10;
const municipalityLabels = L.layerGroup();
const boundaries = L.geoJSON(null, {
  renderer,
  interactive: false,
  style: (feature) => ({
    color: feature.properties.kind === "state" ? "#e2e8f0" : "#64748b",
    weight: feature.properties.kind === "state" ? 2 : 1,
    fillColor: "#1e293b",
    fillOpacity: config.tiles.length ? 0 : 0.35,
  }),
  onEachFeature: (feature, layer) => {
    if (feature.properties.kind !== "municipality" || !layer.getBounds) return;
    L.tooltip({ permanent: true, direction: "center", className: "muni-label", interactive: false })
      .setLatLng(layer.getBounds().getCenter())
      .setContent(feature.properties.name)
      .addTo(municipalityLabels);
  },
}).addTo(map);
function toggleMunicipalityLabels() {
  if (map.getZoom() >= MUNICIPALITY_LABEL_ZOOM) municipalityLabels.addTo(map);
  else municipalityLabels.remove();
}
map.on("zoomend", toggleMunicipalityLabels);
toggleMunicipalityLabels();
map.attributionControl.addAttribution(config.attribution);
fetch("/api/v1/dashboard/boundaries", { credentials: "same-origin" })
  .then((r) => (r.ok ? r.json() : null))
  .then((collection) => collection && boundaries.addData(collection))
  .catch(() => {});

// Legend: what the colours and rings mean (units by agency kind, incidents by priority).
const legend = L.control({ position: "bottomleft" });
legend.onAdd = () => {
  const box = L.DomUtil.create("div", "map-legend");
  box.setAttribute("role", "region");
  box.setAttribute("aria-label", T.legend);
  const row = (swatch, text) => `<li><span class="swatch ${swatch.cls || ""}" style="${swatch.style}"></span>${text}</li>`;
  const esc = (text) => String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  box.innerHTML = `<strong>${esc(T.legend)}</strong><ul>${[
    ...Object.entries(config.agencyKinds).map(([kind, label]) => row({ style: `background:${AGENCY_COLOURS[kind] || "#94a3b8"}` }, esc(label))),
    row({ style: "background:#475569", cls: "small" }, esc(T.idle)),
    row({ style: "background:transparent;border:2px solid #fde047" }, esc(T.assigned)),
    row({ style: "background:#94a3b8;opacity:.3" }, esc(T.stale)),
    ...Object.entries(config.priorities).map(([value, label]) => row({ style: `background:${PRIORITY_COLOURS[value]}`, cls: "big" }, `${esc(T.incident)} ${esc(label)}`)),
  ].join("")}</ul>`;
  return box;
};
legend.addTo(map);

const unitLayer = L.layerGroup().addTo(map);
const incidentLayer = L.layerGroup().addTo(map);
const overlay = L.layerGroup().addTo(map); // radius circle and track

// --- State -------------------------------------------------------------------------------------
const units = new Map(); // id -> {id, callsign, agency, status, lat, lon, at, stale, marker, shown}
const incidents = new Map(); // folio -> {..., marker, shown}
const agencies = new Map();
const jurisdictions = new Map();
const filters = { agency: "", status: "", priority: "", jurisdiction: "" };
let selectedUnit = null;
let radiusCentre = null;

const cadMap = {
  map,
  units,
  incidents,
  ready: false,
  avlMessages: 0,
  lastAvl: null,
  counts() {
    let visibleUnits = 0;
    let visibleIncidents = 0;
    for (const u of units.values()) if (u.shown) visibleUnits += 1;
    for (const i of incidents.values()) if (i.shown) visibleIncidents += 1;
    return { units: units.size, incidents: incidents.size, visibleUnits, visibleIncidents };
  },
  position(id) {
    const u = units.get(Number(id));
    if (!u || !u.marker) return null;
    const ll = u.marker.getLatLng();
    return [ll.lat, ll.lng];
  },
};
window.cadMap = cadMap;

// --- Styles and visibility ---------------------------------------------------------------------
function unitStyle(u) {
  const agency = agencies.get(u.agency);
  const fill = IDLE.has(u.status) ? "#475569" : AGENCY_COLOURS[agency ? agency.kind : "other"] || "#94a3b8";
  const opacity = u.stale ? 0.25 : 1;
  return {
    radius: IDLE.has(u.status) ? 3 : 5,
    color: ASSIGNED.has(u.status) ? "#fde047" : "#0f172a",
    weight: ASSIGNED.has(u.status) ? 2 : 1,
    fillColor: fill,
    fillOpacity: 0.9 * opacity,
    opacity,
  };
}

function inBox(lat, lon, bbox) {
  return lon >= bbox[0] && lat >= bbox[1] && lon <= bbox[2] && lat <= bbox[3];
}

function unitVisible(u) {
  if (u.lat == null || u.lon == null) return false;
  if (filters.agency && String(u.agency) !== filters.agency) return false;
  if (filters.status && u.status !== filters.status) return false;
  if (filters.jurisdiction) {
    const j = jurisdictions.get(filters.jurisdiction);
    if (j && !inBox(u.lat, u.lon, j.bbox)) return false;
  }
  return true;
}

function incidentVisible(i) {
  if (i.lat == null || i.lon == null) return false;
  if (filters.priority && i.priority !== filters.priority) return false;
  if (filters.jurisdiction) {
    const j = jurisdictions.get(filters.jurisdiction);
    if (j && (i.state && i.state.cvegeo) !== j.cvegeo && (i.municipality && i.municipality.cvegeo) !== j.cvegeo) return false;
  }
  return true;
}

function show(layer, item, visible) {
  if (visible && !item.shown) layer.addLayer(item.marker);
  if (!visible && item.shown) layer.removeLayer(item.marker);
  item.shown = visible;
}

function isStale(at) {
  return !at || Date.now() - at > STALE_MS;
}

// --- Units -------------------------------------------------------------------------------------
function upsertUnit(data) {
  let u = units.get(data.id);
  if (!u) {
    u = { id: data.id, shown: false, marker: null };
    units.set(data.id, u);
  }
  Object.assign(u, {
    callsign: data.callsign ?? u.callsign,
    agency: data.agency ?? u.agency,
    status: data.status ?? u.status,
  });
  if (data.lat != null && data.lon != null) {
    const at = data.at ? Date.parse(data.at) : u.at;
    if (!u.at || !at || at >= u.at) Object.assign(u, { lat: data.lat, lon: data.lon, at });
  }
  u.stale = isStale(u.at);
  if (u.lat != null && !u.marker) {
    u.marker = L.circleMarker([u.lat, u.lon], { renderer, ...unitStyle(u) });
    u.marker.on("click", () => selectUnit(u.id));
  } else if (u.marker) {
    u.marker.setLatLng([u.lat, u.lon]);
    u.marker.setStyle(unitStyle(u));
  }
  if (u.marker) show(unitLayer, u, unitVisible(u));
  return u;
}

function moveUnit(id, lat, lon, iso) {
  const u = units.get(id);
  if (!u) return;
  const at = Date.parse(iso);
  if (u.at && at < u.at) return;
  const wasStale = u.stale;
  Object.assign(u, { lat, lon, at, stale: isStale(at) });
  if (!u.marker) {
    upsertUnit({ id, lat, lon, at: iso });
    return;
  }
  u.marker.setLatLng([lat, lon]);
  if (wasStale !== u.stale) u.marker.setStyle(unitStyle(u));
  if (filters.jurisdiction) show(unitLayer, u, unitVisible(u));
}

// --- Incidents ---------------------------------------------------------------------------------
function incidentPopup(i) {
  const box = document.createElement("div");
  const title = document.createElement("strong");
  title.textContent = `${i.folio} · ${i.type_code} ${i.type_name}`;
  const meta = document.createElement("p");
  meta.textContent = [
    config.priorities[i.priority] || i.priority,
    config.incidentStatuses[i.status] || i.status,
    i.handled_by_center ? T.handled_by.replace("%(peer)s", i.handled_by_center) : "", // another centre runs its clock
    i.origin_center ? T.origin.replace("%(peer)s", i.origin_center).replace("%(folio)s", i.origin_folio || "") : "",
    i.address,
  ].filter(Boolean).join(" · ");
  const link = document.createElement("a");
  link.href = `/console/?folio=${encodeURIComponent(i.folio)}`;
  link.textContent = T.open;
  link.className = "open-incident";
  box.append(title, meta, link);
  return box;
}

/** "10104 Accidente de vehículo…": the CNIE code and the type name (shortened), not the code alone. */
function incidentLabel(i) {
  const name = i.type_name || "";
  return `${i.type_code} ${name.length > 32 ? `${name.slice(0, 31)}…` : name}`.trim();
}

function upsertIncident(data) {
  let i = incidents.get(data.folio);
  if (!i) {
    i = { folio: data.folio, shown: false, marker: null };
    incidents.set(data.folio, i);
  }
  Object.assign(i, data);
  if (i.lat == null || i.lon == null) return i;
  const style = { radius: 9, color: "#0f172a", weight: 2, fillColor: PRIORITY_COLOURS[i.priority] || "#f8fafc", fillOpacity: 0.95 };
  if (!i.marker) {
    i.marker = L.circleMarker([i.lat, i.lon], { renderer, ...style });
    i.marker.bindTooltip(incidentLabel(i), { permanent: true, direction: "right", className: "incident-label", offset: [8, 0] });
    i.marker.bindPopup(() => incidentPopup(i));
  } else {
    i.marker.setLatLng([i.lat, i.lon]);
    i.marker.setStyle(style);
    i.marker.setTooltipContent(incidentLabel(i));
  }
  show(incidentLayer, i, incidentVisible(i));
  return i;
}

function removeIncident(folio) {
  const i = incidents.get(folio);
  if (!i) return;
  if (i.shown) incidentLayer.removeLayer(i.marker);
  incidents.delete(folio);
}

// --- Snapshot and live events ------------------------------------------------------------------
let snapshotPromise = null;
function loadSnapshot() {
  if (snapshotPromise) return snapshotPromise;
  snapshotPromise = (async () => {
    const response = await fetch("/api/v1/dashboard/map", { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    agencies.clear();
    for (const a of data.agencies) agencies.set(a.id, a);
    jurisdictions.clear();
    for (const j of data.jurisdictions) jurisdictions.set(j.cvegeo, j);
    fillSelect("f-agency", data.agencies.map((a) => [String(a.id), a.name]));
    fillSelect("f-jurisdiction", data.jurisdictions.map((j) => [j.cvegeo, `${j.cvegeo} ${j.name}`]));
    const seen = new Set();
    for (const [id, callsign, agency, status, lat, lon, at] of data.units) {
      seen.add(id);
      upsertUnit({ id, callsign, agency, status, lat, lon, at });
    }
    for (const [id, u] of units) if (!seen.has(id)) { if (u.shown) unitLayer.removeLayer(u.marker); units.delete(id); }
    const open = new Set(data.incidents.map((i) => i.folio));
    for (const folio of [...incidents.keys()]) if (!open.has(folio)) removeIncident(folio);
    for (const i of data.incidents) upsertIncident(i);
    cadMap.ready = true;
    refreshCounts();
  })().finally(() => setTimeout(() => { snapshotPromise = null; }, 1000));
  return snapshotPromise;
}

function applyConsole(envelope) {
  const p = envelope.payload;
  switch (envelope.type) {
    case "incident.created":
    case "incident.updated":
      if (p.status === "closed") removeIncident(p.folio);
      else upsertIncident(p);
      break;
    case "incident.closed":
      removeIncident(p.folio);
      break;
    case "unit.status_changed":
      upsertUnit({ id: p.id, callsign: p.callsign, agency: p.agency_id, status: p.status, lat: p.lat, lon: p.lon, at: p.position_at });
      break;
    case "assignment.created":
      if (p.unit) upsertUnit({ id: p.unit.id, callsign: p.unit.callsign, agency: p.unit.agency_id, status: p.unit.status });
      break;
    default:
      return;
  }
  refreshCounts();
}

function applyAvl(envelope) {
  if (envelope.type !== "units.positions") return;
  for (const [id, lat, lon, iso] of envelope.payload.positions) moveUnit(id, lat, lon, iso);
  cadMap.avlMessages += 1;
  const last = envelope.payload.positions[envelope.payload.positions.length - 1];
  if (last) cadMap.lastAvl = { id: last[0], lat: last[1], lon: last[2], at: last[3], receivedAt: Date.now() };
  scheduleRadius();
}

const conn = document.getElementById("conn");
const realtime = new RealtimeClient({
  path: "/ws/console/",
  streams: {
    console: { snapshot: loadSnapshot, apply: applyConsole },
    avl: { snapshot: loadSnapshot, apply: applyAvl },
  },
  onState: (state) => {
    conn.dataset.state = state;
    conn.textContent = { open: T.open_ws, closed: T.closed_ws, refused: T.refused_ws }[state] || T.connecting;
  },
  onNotice: (notice) => { // Redis down: the map is refreshed from the database every few seconds
    if (notice.code === "live_degraded") {
      conn.dataset.state = "degraded";
      conn.textContent = notice.message;
    } else if (notice.code === "live_restored") {
      conn.dataset.state = "open";
      conn.textContent = T.open_ws;
    }
  },
});
window.cadRealtime = realtime;
realtime.start();

// Staleness changes with the clock, not only with messages.
setInterval(() => {
  for (const u of units.values()) {
    const stale = isStale(u.at);
    if (stale !== u.stale && u.marker) {
      u.stale = stale;
      u.marker.setStyle(unitStyle(u));
    }
  }
}, 5000);

// --- Filters and counts ------------------------------------------------------------------------
function fillSelect(id, options) {
  const select = document.getElementById(id);
  const current = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const [value, label] of options) select.add(new Option(label, value));
  select.value = current;
}

function applyFilters() {
  for (const u of units.values()) if (u.marker) show(unitLayer, u, unitVisible(u));
  for (const i of incidents.values()) if (i.marker) show(incidentLayer, i, incidentVisible(i));
  refreshCounts();
}

for (const [id, key] of [["f-agency", "agency"], ["f-status", "status"], ["f-priority", "priority"], ["f-jurisdiction", "jurisdiction"]]) {
  document.getElementById(id).addEventListener("change", (event) => {
    filters[key] = event.target.value;
    if (key === "jurisdiction" && filters.jurisdiction) {
      const j = jurisdictions.get(filters.jurisdiction);
      if (j) map.fitBounds([[j.bbox[1], j.bbox[0]], [j.bbox[3], j.bbox[2]]]);
    }
    applyFilters();
  });
}

const countsEl = document.getElementById("counts");
const mapEl = document.getElementById("map");
function refreshCounts() {
  const c = cadMap.counts();
  mapEl.dataset.units = String(c.visibleUnits);
  mapEl.dataset.incidents = String(c.visibleIncidents);
  countsEl.textContent = `${c.visibleUnits} / ${c.units} ${T.units} · ${c.visibleIncidents} / ${c.incidents} ${T.incidents}`;
}

// --- Radius query (shift + click) --------------------------------------------------------------
const radiusInput = document.getElementById("radius-m");
const radiusList = document.getElementById("radius-list");
let radiusCircle = null;
let radiusTimer = null;

function haversineM(lat1, lon1, lat2, lon2) {
  const rad = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * rad) / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(((lon2 - lon1) * rad) / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(a));
}

function drawRadius() {
  radiusTimer = null;
  if (!radiusCentre) return;
  const radius = Number(radiusInput.value) || 1000;
  if (!radiusCircle) radiusCircle = L.circle(radiusCentre, { radius, renderer, color: "#38bdf8", weight: 2, fillOpacity: 0.08, interactive: false }).addTo(overlay);
  radiusCircle.setLatLng(radiusCentre).setRadius(radius);
  const inside = [];
  for (const u of units.values()) {
    if (!u.shown) continue;
    const d = haversineM(radiusCentre.lat, radiusCentre.lng, u.lat, u.lon);
    if (d <= radius) inside.push([d, u]);
  }
  inside.sort((a, b) => a[0] - b[0]);
  radiusList.replaceChildren(
    ...(inside.length
      ? inside.slice(0, 200).map(([d, u]) => {
          const li = document.createElement("li");
          li.textContent = `${u.callsign} · ${config.statuses[u.status] || u.status} · ${(d / 1000).toFixed(2)} km${u.stale ? ` (${T.stale})` : ""}`;
          li.dataset.unitId = String(u.id);
          li.addEventListener("click", () => selectUnit(u.id));
          return li;
        })
      : [Object.assign(document.createElement("li"), { textContent: T.noUnits })]),
  );
  radiusList.dataset.count = String(inside.length);
}

function scheduleRadius() {
  if (radiusCentre && !radiusTimer) radiusTimer = setTimeout(drawRadius, 1000);
}

map.on("click", (event) => {
  if (!event.originalEvent.shiftKey) return;
  radiusCentre = event.latlng;
  drawRadius();
});
radiusInput.addEventListener("input", () => drawRadius());
document.getElementById("radius-clear").addEventListener("click", () => {
  radiusCentre = null;
  if (radiusCircle) overlay.removeLayer(radiusCircle);
  radiusCircle = null;
  radiusList.replaceChildren();
});
cadMap.radiusAt = (lat, lon, metres) => {
  radiusCentre = L.latLng(lat, lon);
  if (metres) radiusInput.value = String(metres);
  drawRadius();
  return Number(radiusList.dataset.count || 0);
};

// --- Selected unit and its track ---------------------------------------------------------------
const unitInfo = document.getElementById("unit-info");
const trackButton = document.getElementById("track-btn");
let trackLine = null;

function selectUnit(id) {
  const u = units.get(id);
  if (!u) return;
  selectedUnit = id;
  const agency = agencies.get(u.agency);
  unitInfo.textContent = `${u.callsign} · ${agency ? agency.name : ""} · ${config.statuses[u.status] || u.status}${u.stale ? ` (${T.stale})` : ""}`;
  trackButton.disabled = false;
}

trackButton.addEventListener("click", async () => {
  if (selectedUnit === null) return;
  const response = await fetch(`/api/v1/units/${selectedUnit}/track?minutes=60`, { credentials: "same-origin" });
  if (!response.ok) return;
  const track = await response.json();
  if (trackLine) overlay.removeLayer(trackLine);
  const points = track.positions.map((p) => [p.lat, p.lon]);
  trackLine = L.polyline(points, { renderer, color: "#38bdf8", weight: 3 }).addTo(overlay);
  cadMap.trackPoints = points.length;
  unitInfo.textContent = `${track.callsign} · ${T.track}: ${points.length} ${T.points}`;
  if (points.length) map.fitBounds(trackLine.getBounds(), { maxZoom: 15 });
});
cadMap.selectUnit = selectUnit;
