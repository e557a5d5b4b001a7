// The dashboard map's plate track: successive reads of a plate (ours and those a peer state reported),
// drawn as a line with a marker per read. A new hit of the tracked plate ("cad:event" lpr.hit from the
// page's websocket client) redraws it. Needs Leaflet (window.L) and the dashboard's window.cadMap.map.
// Test hook: window.cadPlateTrack = {plate, points, layers}.

let layer = null;
let tracked = null;

async function readsOf(plate, hours) {
  const response = await fetch(`/api/v1/lpr/plates/${encodeURIComponent(plate)}/track?hours=${hours}`, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) {
    // The API's own words for the supervisor (e.g. a plate with no letters or digits), not a bare status.
    const body = await response.json().catch(() => null);
    const fields = (body && body.fields) || {};
    throw new Error((fields.plate || fields.hours || [])[0] || (body && body.message) || `HTTP ${response.status}`);
  }
  return response.json();
}

/** Draw the track of `plate` on the Leaflet `map`; returns the number of reads drawn. */
export async function drawPlateTrack(map, plate, { hours = 24 } = {}) {
  const points = await readsOf(plate, hours);
  tracked = plate;
  if (layer) layer.remove();
  layer = window.L.layerGroup().addTo(map);
  const line = points.map((p) => [p.lat, p.lon]);
  // Options, not CSS: the dashboard map draws on a canvas.
  if (line.length > 1) window.L.polyline(line, { color: "#b00020", weight: 3 }).addTo(layer);
  points.forEach((p, i) => {
    const when = new Date(p.read_at).toLocaleString(document.documentElement.lang || "es-MX", { timeZone: "America/Mexico_City" });
    const label = `${p.plate} · ${p.place}${p.origin ? ` (${p.origin})` : ""} · ${when}`;
    const radius = i === points.length - 1 ? 8 : 5;
    window.L.circleMarker([p.lat, p.lon], { radius, color: "#b00020", fillColor: "#fff", fillOpacity: 1 })
      .bindTooltip(label)
      .addTo(layer);
  });
  if (line.length) map.fitBounds(window.L.latLngBounds(line).pad(0.3), { maxZoom: 14 });
  window.cadPlateTrack = { plate, points: points.length, layers: layer.getLayers().length }; // test hook
  return points.length;
}

const form = document.getElementById("plate-track-form");
if (form) {
  const output = document.getElementById("plate-track-count");
  const draw = async (plate) => {
    const count = await drawPlateTrack(window.cadMap.map, plate);
    output.textContent = String(count);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    draw(form.elements.plate.value.trim()).catch((error) => { output.textContent = error.message; });
  });
  document.addEventListener("cad:event", ({ detail }) => {
    const normal = (s) => s.toUpperCase().replace(/[^0-9A-Z]/g, "");
    if (detail.type === "lpr.hit" && tracked && normal(detail.payload.plate) === normal(tracked)) draw(tracked);
  });
}
