// Live mini-map of the console: units (by status), open incidents (by priority, the open one ringed and
// centred) and the location candidates of the open incident (numbered). A click proposes that point as
// the incident's location. Base: CAD_TILE_URL tiles when configured; otherwise (and beneath) the INEGI
// boundaries with the municipalities' names, so the map is usable without any tile server.

import { api, config } from "./common.js";

const PRIORITY = { ALTA: "#ff5f56", MEDIA: "#ffcc66", BAJA: "#8ec5ff" };
const ASSIGNED = new Set(["dispatched", "en_route", "on_scene", "transporting", "at_hospital"]);

export function createMiniMap(container, { onPick, onIncident }) {
  const L = window.L;
  const inert = { setUnits() {}, setIncidents() {}, focus() {}, showCandidates() {} };
  if (!L || !container) return inert;
  const options = config.map;
  const renderer = L.canvas({ padding: 0.3 });
  const map = L.map(container, { preferCanvas: true, renderer, keyboard: true, attributionControl: true, zoomControl: true })
    .setView(options.center, options.zoom);
  map.attributionControl.setPrefix(false);
  for (const [, url] of options.tiles || []) L.tileLayer(url, { attribution: options.attribution, maxZoom: 19 }).addTo(map);
  map.attributionControl.addAttribution(options.attribution);
  const labels = L.layerGroup();
  const boundaries = L.geoJSON(null, {
    renderer,
    interactive: false,
    style: (f) => ({
      color: f.properties.kind === "state" ? "#cbd5e1" : "#52606d",
      weight: f.properties.kind === "state" ? 2 : 1,
      fillColor: "#1d2733",
      fillOpacity: (options.tiles || []).length ? 0 : 0.45,
    }),
    onEachFeature: (f, layer) => {
      if (f.properties.kind !== "municipality") return;
      L.tooltip({ permanent: true, direction: "center", className: "muni-label", interactive: false })
        .setLatLng(layer.getBounds().getCenter()).setContent(f.properties.name).addTo(labels);
    },
  }).addTo(map);
  const toggleLabels = () => (map.getZoom() >= 10 ? labels.addTo(map) : labels.remove());
  map.on("zoomend", toggleLabels);
  api("jurisdictions/boundaries").then((collection) => { boundaries.addData(collection); toggleLabels(); }).catch(() => {});

  const unitLayer = L.layerGroup().addTo(map);
  const incidentLayer = L.layerGroup().addTo(map);
  const candidateLayer = L.layerGroup().addTo(map);
  let clicked = null;
  map.on("click", (event) => {
    if (clicked) clicked.remove();
    clicked = L.circleMarker(event.latlng, { radius: 8, color: "#ffd166", weight: 3, fillOpacity: 0.2 }).addTo(map);
    if (onPick) onPick(event.latlng.lat, event.latlng.lng);
  });
  setTimeout(() => map.invalidateSize(), 200);
  window.cadMiniMap = { map, units: 0, incidents: 0, candidates: 0 };

  return {
    setUnits(units) {
      unitLayer.clearLayers();
      let count = 0;
      for (const u of units) {
        if (u.lat == null || u.lon == null) continue;
        count += 1;
        L.circleMarker([u.lat, u.lon], {
          renderer, radius: 4, weight: ASSIGNED.has(u.status) ? 2 : 1,
          color: ASSIGNED.has(u.status) ? "#ffd166" : "#0f1419",
          fillColor: u.status === "available" ? "#7ee2a8" : ASSIGNED.has(u.status) ? "#7fb3ff" : "#6b7785", fillOpacity: 0.9,
        }).bindTooltip(`${u.callsign} · ${config.unit_statuses[u.status] || u.status}`).addTo(unitLayer);
      }
      window.cadMiniMap.units = count;
    },
    setIncidents(incidents, selected) {
      incidentLayer.clearLayers();
      let count = 0;
      for (const i of incidents) {
        if (i.lat == null || i.lon == null) continue;
        count += 1;
        const marker = L.circleMarker([i.lat, i.lon], {
          renderer, radius: i.folio === selected ? 10 : 7, color: i.folio === selected ? "#ffd166" : "#0f1419",
          weight: i.folio === selected ? 4 : 2, fillColor: PRIORITY[i.priority] || "#eef2f6", fillOpacity: 0.95,
        }).bindTooltip(`${i.folio} · ${i.type_code} ${i.type_name}`);
        marker.on("click", (event) => { L.DomEvent.stopPropagation(event); if (onIncident) onIncident(i.folio); });
        marker.addTo(incidentLayer);
      }
      window.cadMiniMap.incidents = count;
    },
    focus(lat, lon) {
      map.setView([lat, lon], Math.max(map.getZoom(), 12));
    },
    showCandidates(candidates, active = -1) {
      candidateLayer.clearLayers();
      candidates.forEach((c, i) => {
        L.marker([c.lat, c.lon], {
          icon: L.divIcon({ className: `cand-icon${i === active ? " active" : ""}`, html: String(i + 1), iconSize: [20, 20] }),
          keyboard: false,
        }).bindTooltip(c.label).addTo(candidateLayer);
      });
      window.cadMiniMap.candidates = candidates.length;
      if (candidates.length) {
        const target = candidates[Math.max(0, active)];
        map.setView([target.lat, target.lon], Math.max(map.getZoom(), 11));
      }
    },
  };
}
