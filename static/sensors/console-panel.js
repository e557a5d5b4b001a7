// Sensor alerts on the dispatch console: plate-reader hits (sound + a distinct row, open an incident,
// acknowledge, dismiss), panic presses, and the panic-button panel (state, history, camera).
// Fed by the console's websocket: the console dispatches every applied event as a "cad:event"
// CustomEvent on document (detail = envelope), and "cad:snapshot" after it reloads its snapshot.

import { api, beep, clock, dateTime, el, showBanner } from "../console/common.js";

const config = JSON.parse(document.getElementById("sensors-config").textContent);
const t = (key, params = {}) =>
  (config.strings[key] || key).replace(/%\((\w+)\)s/g, (_, name) => (name in params ? String(params[name]) : ""));

const alertsList = document.getElementById("lpr-alerts");
const alertsCount = document.getElementById("lpr-count");
const buttonsBody = document.getElementById("panic-body");
const offlineCount = document.getElementById("panic-offline");
const buttonDetail = document.getElementById("panic-detail");
const hits = new Map(); // id -> hit (status new only)
const buttons = new Map(); // id -> button

// --- Plate hits -------------------------------------------------------------------------------
function vehicleText(vehicle) {
  return ["make", "model", "color", "type", "year"].map((k) => vehicle && vehicle[k]).filter(Boolean).join(" · ");
}

function renderHits() {
  alertsList.replaceChildren(
    ...[...hits.values()]
      .sort((a, b) => b.id - a.id)
      .map((hit) =>
        el(
          "li",
          { class: `lpr-hit lpr-${hit.hotlist_kind}`, dataset: { hit: hit.id }, role: "alert" },
          el("strong", { class: "plate" }, hit.plate),
          hit.read_plate !== hit.plate ? el("span", { class: "muted" }, t("leída %(plate)s", { plate: hit.read_plate })) : null,
          el("span", { class: "kind" }, config.kinds[hit.hotlist_kind] || hit.hotlist_kind),
          // Across states: a peer's list read by our arch, or our list read by a peer's arch (its sighting).
          hit.list_owner ? el("span", { class: "peer" }, t("Lista de %(peer)s", { peer: hit.list_owner })) : null,
          hit.origin ? el("span", { class: "peer" }, t("Leída en %(peer)s", { peer: hit.origin })) : null,
          el("span", {}, hit.reason),
          el("span", { class: "vehicle" }, vehicleText(hit.vehicle)),
          el("span", { class: "place" }, hit.place),
          el("time", { datetime: hit.read_at }, clock(hit.read_at)),
          hit.folio
            ? el("a", { href: `#${hit.folio}`, class: "folio" }, hit.folio)
            : config.can_dispatch
              ? el("button", { type: "button", onclick: () => openIncident(hit.id) }, t("Abrir incidente"))
              : null,
          el("button", { type: "button", onclick: () => setStatus(hit.id, "acknowledged") }, t("Atendida")),
          el("button", { type: "button", class: "secondary", onclick: () => setStatus(hit.id, "dismissed") }, t("Descartar")),
        ),
      ),
  );
  alertsCount.textContent = String(hits.size);
}

function applyHit(hit, { fresh }) {
  if (hit.status === "new" || (hit.status === "incident" && hits.has(hit.id))) hits.set(hit.id, hit);
  else hits.delete(hit.id);
  if (fresh && hit.status === "new") {
    beep();
    const text = hit.origin
      ? t("Placa nuestra vista en %(peer)s: %(plate)s en %(place)s", { peer: hit.origin, plate: hit.plate, place: hit.place })
      : t("Placa en lista: %(plate)s en %(place)s", { plate: hit.plate, place: hit.place });
    showBanner(text, "alert");
  }
  renderHits();
}

async function openIncident(id) {
  try {
    const hit = await api(`lpr/hits/${id}/incident`, { method: "POST", body: {} });
    applyHit(hit, { fresh: false });
  } catch (error) {
    showBanner(error.message, "error");
  }
}

async function setStatus(id, status) {
  try {
    applyHit(await api(`lpr/hits/${id}/status`, { method: "POST", body: { status } }), { fresh: false });
  } catch (error) {
    showBanner(error.message, "error");
  }
}

// --- Panic buttons ----------------------------------------------------------------------------
function renderButtons() {
  const rows = [...buttons.values()].sort((a, b) => Number(a.online) - Number(b.online) || a.name.localeCompare(b.name));
  buttonsBody.replaceChildren(
    ...rows.map((b) =>
      el(
        "tr",
        { class: b.online ? "" : "offline", dataset: { button: b.id }, tabindex: "0", onclick: () => showButton(b.id) },
        el("td", {}, b.name),
        el("td", {}, b.address),
        el("td", {}, b.agency || "—"),
        el("td", { class: b.online ? "online" : "offline" }, b.online ? t("En línea") : t("Sin señal")),
        el("td", {}, dateTime(b.last_seen_at)),
      ),
    ),
  );
  offlineCount.textContent = String(rows.filter((b) => !b.online).length);
}

async function showButton(id) {
  const button = await api(`panic/buttons/${id}`);
  buttonDetail.replaceChildren(
    el("h3", {}, `${button.name} (${button.account})`),
    el("p", {}, button.address),
    button.camera_ref ? el("p", {}, t("Cámara: %(ref)s", { ref: button.camera_ref })) : null,
    el(
      "ol",
      { class: "panic-history" },
      ...button.history.map((h) =>
        el("li", {}, dateTime(h.received_at), " ", config.signal_kinds[h.kind] || h.kind, h.code ? ` ${h.code}` : "", h.folio ? ` → ${h.folio}` : ""),
      ),
    ),
  );
}

function applySensor(payload) {
  if (payload.kind !== "panic_button") return;
  const button = buttons.get(payload.id);
  if (button) Object.assign(button, { online: payload.online, last_seen_at: payload.last_seen_at });
  renderButtons();
  if (!payload.online) showBanner(t("Botón sin señal: %(name)s", { name: payload.name }), "warning");
}

// --- Feed -------------------------------------------------------------------------------------
async function loadSnapshot() {
  const [newHits, panicButtons] = await Promise.all([api("lpr/hits?status=new"), api("panic/buttons")]);
  hits.clear();
  for (const hit of newHits) hits.set(hit.id, hit);
  buttons.clear();
  for (const b of panicButtons) buttons.set(b.id, b);
  renderHits();
  renderButtons();
}

document.addEventListener("cad:snapshot", loadSnapshot);
document.addEventListener("cad:event", ({ detail: envelope }) => {
  const { type, payload } = envelope;
  if (type === "lpr.hit") applyHit(payload, { fresh: true });
  else if (type === "lpr.hit_updated") applyHit(payload, { fresh: false });
  else if (type === "sensor.offline" || type === "sensor.online") applySensor(payload);
  else if (type === "panic.pressed") {
    const button = buttons.get(payload.button.id);
    if (button) Object.assign(button, { online: true, last_seen_at: payload.at });
    renderButtons();
  }
});
loadSnapshot().catch((error) => showBanner(error.message, "error"));
