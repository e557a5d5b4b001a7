// Location panel of the console: set or correct where an incident is. Search an address or place (the
// geocoder's candidates, ↑/↓ and Enter to pick), click the mini-map (reverse lookup: municipality and
// state), or type coordinates. A point outside the centre's area asks for an explicit confirmation; a
// refused coordinate marks its field. Everything goes through POST /api/v1/incidents/{folio}/location.

import { ApiError, api, el, t } from "./common.js";

export function createLocationPanel(container, { getIncident, onCandidates, onPlaced }) {
  const status = el("p", { class: "loc-status", role: "status", "aria-live": "polite", id: "loc-status" });
  const search = el("input", {
    id: "loc-q", type: "search", autocomplete: "off", role: "combobox", "aria-autocomplete": "list",
    "aria-controls": "loc-candidates", "aria-expanded": "false", placeholder: t("loc_placeholder"),
  });
  const list = el("ol", { id: "loc-candidates", class: "loc-candidates", role: "listbox", "aria-label": t("loc_candidates") });
  const lat = el("input", { id: "loc-lat", inputmode: "decimal", autocomplete: "off", "aria-describedby": "loc-lat-error" });
  const lon = el("input", { id: "loc-lon", inputmode: "decimal", autocomplete: "off", "aria-describedby": "loc-lon-error" });
  const latError = el("span", { class: "field-error", id: "loc-lat-error" });
  const lonError = el("span", { class: "field-error", id: "loc-lon-error" });
  const confirmBox = el("div", { class: "loc-confirm", id: "loc-confirm", hidden: true, role: "alert" });
  container.replaceChildren(
    el("label", { for: "loc-q" }, t("loc_search"), " ", el("kbd", {}, "U")),
    search,
    list,
    el("div", { class: "field-row loc-coords" },
      el("label", { for: "loc-lat" }, t("lat")), lat, latError,
      el("label", { for: "loc-lon" }, t("lon")), lon, lonError,
      el("button", { type: "button", id: "loc-apply", onclick: () => applyTyped() }, t("loc_apply"))),
    confirmBox,
    status,
  );

  let candidates = [];
  let active = -1;
  let seq = 0;
  let timer = null;

  function renderCandidates() {
    list.replaceChildren(...candidates.map((c, i) => el("li", {
      id: `loc-opt-${i}`, role: "option", "aria-selected": String(i === active), "data-index": i,
      class: c.inside_service_area ? "" : "outside",
      onmousedown: (event) => { event.preventDefault(); pick(c, "geocoder"); },
    }, el("span", { class: "loc-n" }, String(i + 1)), " ", c.label,
    c.inside_service_area ? null : el("span", { class: "tag warn" }, t("outside_area")))));
    search.setAttribute("aria-expanded", String(candidates.length > 0));
    if (active >= 0) search.setAttribute("aria-activedescendant", `loc-opt-${active}`);
    else search.removeAttribute("aria-activedescendant");
    if (onCandidates) onCandidates(candidates, active);
  }

  async function runSearch() {
    const q = search.value.trim();
    const mine = ++seq;
    if (q.length < 2) { candidates = []; active = -1; renderCandidates(); return; }
    try {
      const found = await api(`geocode/search?q=${encodeURIComponent(q)}&limit=8`);
      if (mine !== seq) return;
      candidates = found.candidates;
      active = candidates.length ? 0 : -1;
      status.textContent = candidates.length ? t("loc_found", { n: candidates.length }) : t("loc_none");
      renderCandidates();
    } catch (error) {
      status.textContent = error.message;
    }
  }

  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(runSearch, 200); });
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && candidates.length) { event.preventDefault(); active = (active + 1) % candidates.length; renderCandidates(); }
    else if (event.key === "ArrowUp" && candidates.length) { event.preventDefault(); active = (active - 1 + candidates.length) % candidates.length; renderCandidates(); }
    else if (event.key === "Enter" && !event.ctrlKey) {
      event.preventDefault();
      if (active >= 0 && candidates[active]) pick(candidates[active], "geocoder");
      else runSearch();
    }
  });
  for (const input of [lat, lon]) {
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); applyTyped(); } });
  }

  function clearErrors() {
    for (const [input, box] of [[lat, latError], [lon, lonError]]) {
      input.removeAttribute("aria-invalid");
      box.textContent = "";
    }
    confirmBox.hidden = true;
    confirmBox.replaceChildren();
  }

  function applyTyped() {
    const point = { lat: Number(lat.value.replace(",", ".")), lon: Number(lon.value.replace(",", ".")) };
    if (lat.value.trim() === "" || lon.value.trim() === "") {
      showFieldErrors({ lat: lat.value.trim() ? [] : [t("required")], lon: lon.value.trim() ? [] : [t("required")] });
      return;
    }
    submit({ ...point, source: "caller", place: "" });
  }

  function pick(candidate, source) {
    submit({ lat: candidate.lat, lon: candidate.lon, source, place: candidate.label });
  }

  /** A map click: show where it falls (municipality, state, nearest place) and offer to use it. */
  async function reverse(latValue, lonValue) {
    lat.value = latValue.toFixed(6);
    lon.value = lonValue.toFixed(6);
    clearErrors();
    try {
      const found = await api(`geocode/reverse?lat=${latValue}&lon=${lonValue}`);
      const where = [found.municipality, found.state].filter(Boolean).join(", ") || t("no_jurisdiction");
      const near = found.place ? t("near_place", { place: found.place.label, m: Math.round(found.place.distance_m || 0) }) : "";
      status.textContent = `${where}${near ? ` · ${near}` : ""}`;
      const use = el("button", { type: "button", id: "loc-use-click", class: "primary", onclick: () => submit({ lat: latValue, lon: lonValue, source: "map", place: where }) },
        t("loc_use_point"), " ", el("kbd", {}, "Enter"));
      confirmBox.hidden = false;
      confirmBox.replaceChildren(el("p", {}, t("loc_clicked", { where })), use);
      use.focus();
    } catch (error) {
      status.textContent = error.message;
    }
  }

  function showFieldErrors(fields) {
    for (const [key, input, box] of [["lat", lat, latError], ["lon", lon, lonError]]) {
      const messages = fields[key] || [];
      if (messages.length) { input.setAttribute("aria-invalid", "true"); box.textContent = messages.join(" "); }
    }
    const first = (fields.lat && fields.lat.length && lat) || (fields.lon && fields.lon.length && lon);
    if (first) first.focus();
  }

  async function submit(point, { confirm = false } = {}) {
    const incident = getIncident();
    if (!incident) return;
    clearErrors();
    lat.value = String(point.lat);
    lon.value = String(point.lon);
    try {
      const detail = await api(`incidents/${encodeURIComponent(incident.folio)}/location`, {
        method: "POST",
        body: { lat: point.lat, lon: point.lon, source: point.source, place: point.place || "", confirm_outside_area: confirm, version: incident.version },
      });
      candidates = [];
      active = -1;
      renderCandidates();
      search.value = "";
      status.textContent = t("loc_set", { where: [detail.municipality && detail.municipality.name, detail.state && detail.state.name].filter(Boolean).join(", ") || point.place || "" });
      if (onPlaced) onPlaced(detail);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.code === "outside_service_area") {
        const yes = el("button", { type: "button", id: "loc-confirm-outside", class: "danger", onclick: () => submit(point, { confirm: true }) },
          t("confirm_outside"), " ", el("kbd", {}, "Enter"));
        const no = el("button", { type: "button", onclick: () => { clearErrors(); search.focus(); } }, t("cancel"), " ", el("kbd", {}, "Esc"));
        confirmBox.hidden = false;
        confirmBox.replaceChildren(el("p", {}, error.message), yes, " ", no);
        yes.focus();
        return;
      }
      if (error.code === "coordinates_swapped") {
        const swap = el("button", { type: "button", id: "loc-swap", onclick: () => submit({ ...point, lat: point.lon, lon: point.lat }) }, t("swap_coordinates"));
        confirmBox.hidden = false;
        confirmBox.replaceChildren(el("p", {}, error.message), swap);
      }
      status.textContent = error.message;
      showFieldErrors(error.fields || {});
    }
  }

  return {
    focus() { search.focus(); search.select(); },
    reverse,
    pickIndex(i) { if (candidates[i]) pick(candidates[i], "geocoder"); },
    reset(incident) {
      candidates = [];
      active = -1;
      renderCandidates();
      clearErrors();
      search.value = "";
      lat.value = incident && incident.lat != null ? String(incident.lat) : "";
      lon.value = incident && incident.lon != null ? String(incident.lon) : "";
      status.textContent = "";
    },
  };
}
