// A small Leaflet map (Leaflet is loaded as a classic script: window.L). No tile server by default: the
// centre's jurisdiction boundary (GET /api/v1/jurisdictions/{cvegeo}/) is drawn as a vector base layer.

import { api, config } from "./common.js";

export function createMap(container, { onPick } = {}) {
  const L = window.L;
  if (!L || !container) return { mark() {}, clear() {} };
  const options = config.map;
  const map = L.map(container, { keyboard: true, attributionControl: true }).setView(options.center, options.zoom);
  for (const [name, url] of options.tiles || []) {
    L.tileLayer(url, { attribution: options.attribution, maxZoom: 19 }).addTo(map);
    void name;
  }
  if (!(options.tiles || []).length) map.attributionControl.addAttribution(options.attribution);
  if (options.boundary) {
    api(`jurisdictions/${encodeURIComponent(options.boundary)}/`)
      .then((jurisdiction) => {
        const layer = L.geoJSON(jurisdiction.geometry, {
          style: { color: "#7fb3ff", weight: 2, fillColor: "#1d3557", fillOpacity: 0.35 },
          interactive: false,
        }).addTo(map);
        map.fitBounds(layer.getBounds(), { padding: [8, 8] });
      })
      .catch(() => {}); // no boundaries loaded: an empty map still takes clicks
  }
  let marker = null;
  function mark(lat, lon) {
    if (marker) marker.setLatLng([lat, lon]);
    else marker = L.circleMarker([lat, lon], { radius: 8, color: "#ffd166", weight: 3, fillOpacity: 0.8 }).addTo(map);
  }
  map.on("click", (event) => {
    mark(event.latlng.lat, event.latlng.lng);
    if (onPick) onPick(event.latlng.lat, event.latlng.lng);
  });
  // The map may be laid out after the module runs.
  setTimeout(() => map.invalidateSize(), 200);
  return {
    mark,
    clear() {
      if (marker) { marker.remove(); marker = null; }
    },
  };
}
