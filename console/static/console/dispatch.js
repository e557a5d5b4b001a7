// Manual dispatch: send any available unit, recommended or not, typed by callsign or picked on the unit
// board, several at once. Each option shows its distance and ETA to the incident, its jurisdiction, and
// warnings (beyond the ETA/distance limit, no or stale position, lacking the required capability).
// Keys in the callsign field: ↑/↓ choose, Enter adds/removes, Ctrl+Enter dispatches the selection.

import { api, bannerError, config, duration, el, showBanner, t } from "./common.js";

export function createManualDispatch(container, { getIncident, onDispatched }) {
  const input = el("input", {
    id: "md-q", type: "search", autocomplete: "off", role: "combobox", "aria-autocomplete": "list",
    "aria-controls": "md-options", "aria-expanded": "false", placeholder: t("md_placeholder"),
  });
  const list = el("ul", { id: "md-options", class: "md-options", role: "listbox", "aria-multiselectable": "true", "aria-label": t("md_options") });
  const chosen = el("p", { id: "md-selected", class: "md-selected", "aria-live": "polite" });
  const send = el("button", { type: "button", id: "md-send", class: "primary", disabled: true, onclick: () => dispatch() },
    t("md_send"), " ", el("kbd", {}, "Ctrl+Enter"));
  container.replaceChildren(
    el("label", { for: "md-q" }, t("md_label"), " ", el("kbd", {}, "M")),
    input, list, el("div", { class: "field-row" }, chosen, send),
  );

  let options = [];
  let active = -1;
  const selected = new Map(); // unit_id -> option
  let seq = 0;
  let timer = null;

  function optionText(o) {
    const parts = [o.agency];
    if (o.distance_km != null) parts.push(`${o.distance_km.toFixed(1)} km`, duration(o.eta_s));
    const place = o.jurisdiction && o.jurisdiction.municipality;
    if (place) parts.push(place);
    return parts.join(" · ");
  }

  function render() {
    list.replaceChildren(...options.map((o, i) => el("li", {
      id: `md-opt-${i}`, role: "option", "aria-selected": String(selected.has(o.unit_id)), "data-unit": o.unit_id,
      class: [i === active ? "active" : "", o.warnings.length ? "warned" : ""].join(" "),
      onmousedown: (event) => { event.preventDefault(); active = i; toggle(o); },
    },
    el("span", { class: "mono callsign" }, o.callsign), " ", el("span", { class: "muted small" }, optionText(o)),
    o.warnings.map((w) => el("span", { class: `tag warn w-${w.code}`, title: w.message }, w.message)))));
    input.setAttribute("aria-expanded", String(options.length > 0));
    if (active >= 0) input.setAttribute("aria-activedescendant", `md-opt-${active}`);
    else input.removeAttribute("aria-activedescendant");
    const names = [...selected.values()].map((o) => o.callsign);
    chosen.textContent = names.length ? t("md_chosen", { units: names.join(", ") }) : t("md_none");
    send.disabled = !names.length;
  }

  async function load(unitIds) {
    const incident = getIncident();
    if (!incident) return [];
    const query = unitIds ? "" : `q=${encodeURIComponent(input.value.trim())}&`;
    const found = await api(`incidents/${encodeURIComponent(incident.folio)}/dispatch-options?${query}limit=${unitIds ? 500 : 12}`);
    return unitIds ? found.units.filter((o) => unitIds.includes(o.unit_id)) : found.units;
  }

  async function refresh() {
    const mine = ++seq;
    try {
      const found = await load();
      if (mine !== seq) return;
      options = found;
      active = options.length ? 0 : -1;
      render();
    } catch (error) {
      bannerError(error);
    }
  }

  function toggle(option) {
    if (selected.has(option.unit_id)) selected.delete(option.unit_id);
    else selected.set(option.unit_id, option);
    render();
  }

  async function dispatch() {
    const incident = getIncident();
    if (!incident) return;
    if (!selected.size && options[active]) selected.set(options[active].unit_id, options[active]);
    if (!selected.size) return;
    try {
      const result = await api(`incidents/${encodeURIComponent(incident.folio)}/dispatch`, {
        method: "POST", body: { unit_ids: [...selected.keys()] },
      });
      const warned = Object.entries(result.warnings || {}).map(([callsign, list]) => `${callsign}: ${list.map((w) => w.message).join(" ")}`);
      showBanner(t("md_done", { units: result.assignments.map((a) => a.callsign).join(", ") }) + (warned.length ? ` — ${warned.join(" · ")}` : ""), warned.length ? "warning" : "info");
      selected.clear();
      input.value = "";
      options = [];
      render();
      if (onDispatched) onDispatched(result);
    } catch (error) {
      bannerError(error);
      refresh();
    }
  }

  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 150); });
  input.addEventListener("focus", () => { if (!options.length) refresh(); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && options.length) { event.preventDefault(); active = (active + 1) % options.length; render(); }
    else if (event.key === "ArrowUp" && options.length) { event.preventDefault(); active = (active - 1 + options.length) % options.length; render(); }
    else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); event.stopPropagation(); dispatch(); }
    else if (event.key === "Enter" && options[active]) { event.preventDefault(); toggle(options[active]); }
  });

  return {
    focus() { input.focus(); },
    /** A unit picked on the board: add it to the selection with its distance, ETA and warnings. */
    async add(unitId) {
      if (!config.can_dispatch || !getIncident()) return;
      const [option] = await load([unitId]);
      if (!option) { showBanner(t("md_unavailable"), "warning"); return; }
      selected.set(option.unit_id, option);
      if (!options.some((o) => o.unit_id === option.unit_id)) options = [option, ...options];
      render();
    },
    reset() { selected.clear(); options = []; active = -1; input.value = ""; render(); },
  };
}
