// Unit board: one compact line per unit (callsign, status, agency, capabilities, municipality, incident),
// natural sort (BOM-2 before BOM-10), search and filters (agency, status, capability, jurisdiction),
// counts per status (buttons that filter). Status changes by key on a focused line (E L T H D F) or from
// its ⋯ menu (key "."); Enter sends the unit to the manual dispatch of the open incident.

import { config, el, t } from "./common.js";

const STATUS_ORDER = Object.keys(config.unit_statuses);
export const STATUS_KEYS = { e: "en_route", l: "on_scene", t: "transporting", h: "at_hospital", d: "available", f: "out_of_service" };
const KEY_FOR_STATUS = Object.fromEntries(Object.entries(STATUS_KEYS).map(([k, v]) => [v, k.toUpperCase()]));
const natural = new Intl.Collator("es", { numeric: true, sensitivity: "base" });

export function createBoard(root, { units, onStatus, onPick }) {
  const filters = { q: "", agency: "", status: "", capability: "", jurisdiction: "" };
  const search = root.querySelector("#board-q");
  const selects = Object.fromEntries(["agency", "status", "capability", "jurisdiction"].map((k) => [k, root.querySelector(`#board-f-${k}`)]));
  const counts = root.querySelector("#board-summary");
  const list = root.querySelector("#board-body");
  const shown = root.querySelector("#board-shown");

  search.addEventListener("input", () => { filters.q = search.value.trim().toLowerCase(); render(); });
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || (event.key === "Enter" && !event.ctrlKey)) {
      const first = list.querySelector("li.unit");
      if (first) { event.preventDefault(); first.focus(); }
    }
  });
  for (const [key, select] of Object.entries(selects)) {
    select.addEventListener("change", () => { filters[key] = select.value; render(); });
  }

  function fillSelect(select, entries) {
    const current = select.value;
    select.replaceChildren(el("option", { value: "" }, t("all")), ...entries.map(([value, label]) => el("option", { value }, label)));
    select.value = entries.some(([v]) => v === current) ? current : "";
  }

  function refreshOptions() {
    const agencies = new Map();
    const places = new Map();
    const caps = new Set();
    for (const unit of units.values()) {
      if (unit.agency) agencies.set(String(unit.agency.id), unit.agency.name);
      if (unit.municipality) places.set(unit.municipality.cvegeo, unit.municipality.name);
      for (const code of unit.capabilities || []) caps.add(code);
    }
    fillSelect(selects.agency, [...agencies].sort((a, b) => natural.compare(a[1], b[1])));
    fillSelect(selects.status, STATUS_ORDER.map((s) => [s, config.unit_statuses[s]]));
    fillSelect(selects.capability, [...caps].sort().map((c) => [c, config.capabilities[c] || c]));
    fillSelect(selects.jurisdiction, [...places].sort((a, b) => natural.compare(a[1], b[1])));
  }

  function matches(unit) {
    if (filters.agency && String(unit.agency && unit.agency.id) !== filters.agency) return false;
    if (filters.status && unit.status !== filters.status) return false;
    if (filters.capability && !(unit.capabilities || []).includes(filters.capability)) return false;
    if (filters.jurisdiction && !(unit.municipality && unit.municipality.cvegeo === filters.jurisdiction)) return false;
    if (filters.q) {
      const text = `${unit.callsign} ${unit.agency ? `${unit.agency.code} ${unit.agency.name}` : ""} ${unit.incident || ""}`.toLowerCase();
      if (!text.includes(filters.q)) return false;
    }
    return true;
  }

  function line(unit) {
    const allowed = (config.unit_transitions[unit.status] || []).filter((s) => s !== "dispatched");
    const menu = config.can_dispatch && allowed.length
      ? el("details", { class: "unit-menu" },
        el("summary", { "aria-label": t("status_menu", { callsign: unit.callsign }), title: `${t("status_menu", { callsign: unit.callsign })} (.)` }, "⋯"),
        el("div", { class: "menu", role: "menu" }, allowed.sort((a, b) => STATUS_ORDER.indexOf(a) - STATUS_ORDER.indexOf(b)).map((status) =>
          el("button", { type: "button", role: "menuitem", "data-to": status }, config.unit_statuses[status], KEY_FOR_STATUS[status] ? el("kbd", {}, KEY_FOR_STATUS[status]) : null))))
      : null;
    return el("li", {
      class: `unit st-${unit.status}${unit.stale ? " stale" : ""}`, tabindex: "0", "data-unit": unit.id, "data-status": unit.status,
      "data-context": "board", "aria-label": `${unit.callsign}: ${config.unit_statuses[unit.status] || unit.status}`,
    },
    el("span", { class: "callsign mono" }, unit.callsign),
    el("span", { class: `status-pill st-${unit.status}` }, config.unit_statuses[unit.status] || unit.status),
    el("span", { class: "agency small" }, unit.agency ? unit.agency.code : ""),
    el("span", { class: "caps small muted" }, (unit.capabilities || []).map((c) => config.capabilities[c] || c).join(", ")),
    el("span", { class: "place small muted" }, unit.municipality ? unit.municipality.name : ""),
    el("span", { class: "mono small folio" }, unit.incident || ""),
    menu);
  }

  function render() {
    const totals = {};
    for (const unit of units.values()) totals[unit.status] = (totals[unit.status] || 0) + 1;
    counts.replaceChildren(...STATUS_ORDER.filter((s) => totals[s]).map((s) => el("button", {
      type: "button", class: `status-pill st-${s}${filters.status === s ? " on" : ""}`, "aria-pressed": String(filters.status === s),
      onclick: () => { filters.status = filters.status === s ? "" : s; selects.status.value = filters.status; render(); },
    }, `${config.unit_statuses[s]}: ${totals[s]}`)));
    const focusedId = document.activeElement && document.activeElement.closest && document.activeElement.closest("#board-body li.unit")
      ? document.activeElement.closest("li.unit").dataset.unit : null;
    const visible = [...units.values()].filter(matches).sort((a, b) => natural.compare(a.callsign, b.callsign));
    list.replaceChildren(...visible.map(line));
    shown.textContent = t("board_shown", { n: visible.length, of: units.size });
    if (focusedId) {
      const again = list.querySelector(`li.unit[data-unit="${focusedId}"]`);
      (again || list.querySelector("li.unit") || search).focus();
    }
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-to]");
    const item = event.target.closest("li.unit");
    if (button && item) { onStatus(Number(item.dataset.unit), button.dataset.to); button.closest("details").open = false; }
  });
  list.addEventListener("keydown", (event) => {
    const item = event.target.closest("li.unit");
    if (!item || event.ctrlKey || event.altKey || event.metaKey) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? item.nextElementSibling : item.previousElementSibling;
      if (next) next.focus(); else if (event.key === "ArrowUp") search.focus();
      return;
    }
    if (!event.target.matches("li.unit")) return;
    if (event.key === "." || event.key === "ContextMenu") {
      const menu = item.querySelector("details.unit-menu");
      if (menu) { event.preventDefault(); menu.open = true; const first = menu.querySelector("button"); if (first) first.focus(); }
      return;
    }
    if (event.key === "Enter") { event.preventDefault(); onPick(Number(item.dataset.unit)); return; }
    const to = STATUS_KEYS[event.key.toLowerCase()];
    const unit = units.get(Number(item.dataset.unit));
    if (to && unit && config.can_dispatch && (config.unit_transitions[unit.status] || []).includes(to)) {
      event.preventDefault();
      event.stopPropagation();
      onStatus(unit.id, to);
    }
  });
  list.addEventListener("keydown", (event) => {
    const menu = event.target.closest("details.unit-menu");
    if (!menu) return;
    const buttons = [...menu.querySelectorAll("button")];
    const index = buttons.indexOf(event.target);
    if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); menu.open = false; menu.closest("li.unit").focus(); }
    else if (event.key === "ArrowDown" && index >= 0) { event.preventDefault(); event.stopPropagation(); buttons[(index + 1) % buttons.length].focus(); }
    else if (event.key === "ArrowUp" && index >= 0) { event.preventDefault(); event.stopPropagation(); buttons[(index - 1 + buttons.length) % buttons.length].focus(); }
  }, true);

  return {
    render,
    refreshOptions,
    focusSearch() { search.focus(); search.select(); },
  };
}
