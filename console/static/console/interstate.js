// Interstate on the console pages: an incident flagged for a peer centre shows the peer and offers one key to
// escalate (X: request for service) and one to notify (V: awareness); I escalates to any enabled peer. Each
// escalation shows its delivery state live (pending / sent / accepted / rejected / failed with the last
// error), the peer's folio, units and statuses; supervisors retry or cancel. On the receiving side an inbound
// request shows where it came from, with accept (Y) and reject (R, with a reason). Commands go through REST
// (/api/v1/…/interstate, /escalations); the page's websocket brings `interstate.flagged` and
// `interstate.escalation` events, handed to `applyEvent`.

import { api, bannerError, clock, config, el, hideBanner, refuseBlank, showBanner, t } from "./common.js";

const LIVE = new Set(["pending", "sent", "accepted", "failed"]); // a share a supervisor may still retry or cancel
const ENDED = new Set(["rejected", "cancelled"]); // shares whose peer the flag keys offer again
const UPGRADABLE = new Set(["pending", "sent", "accepted"]); // a notice that may become a request for service
const ANSWERABLE = new Set(["pending"]); // an inbound request no dispatcher has answered yet

/** Per-folio interstate facts the queue shows without loading each incident: origin, flags, states. */
export const queueFacts = new Map(); // folio -> {flags: [...], states: {peer: {state, direction}}, inbound: {peer: state}}
const announced = new Map(); // inbound request id -> the banner that announced it on this page

function factsOf(folio) {
  if (!queueFacts.has(folio)) queueFacts.set(folio, { flags: [], states: {}, inbound: {} });
  return queueFacts.get(folio);
}

export function rememberFlags(folio, flags) {
  factsOf(folio).flags = flags || [];
}

/** Outbound shares by peer (the queue's "→ CDMX · Aceptado"); inbound ones apart, by the peer that sent them
 * (the origin tag says when that peer cancelled its request). */
export function rememberEscalation(folio, escalation) {
  const facts = factsOf(folio);
  if (escalation.direction === "inbound") facts.inbound[escalation.peer.code] = escalation.state;
  else facts.states[escalation.peer.code] = { state: escalation.state, direction: escalation.direction };
}

/** Small badges for a queue row: where an inbound incident came from, which peer a flag or share names. */
export function queueBadges(incident) {
  const badges = [];
  const facts = queueFacts.get(incident.folio);
  if (incident.origin_center) {
    // The origin's request cancelled: said on the row (the incident stays open; its dispatcher decides).
    const cancelled = Boolean(facts && facts.inbound[incident.origin_center] === "cancelled");
    const origin = `← ${incident.origin_center} ${incident.origin_folio || ""}`.trim();
    badges.push(el("span", {
      class: cancelled ? "tag tag-origin tag-origin-cancelled" : "tag tag-origin",
      "data-state": cancelled ? "cancelled" : undefined,
      title: t("is_origin_title", { peer: incident.origin_center, folio: incident.origin_folio }),
    }, cancelled ? `${origin} · ${t("origin_cancelled")}` : origin));
  }
  if (facts) {
    const shared = new Set();
    for (const [peer, { state, direction }] of Object.entries(facts.states)) {
      if (direction !== "outbound") continue;
      shared.add(peer);
      badges.push(el("span", { class: `tag tag-esc st-esc-${state}`, "data-peer": peer }, `→ ${peer} · ${label("states", state)}`));
    }
    for (const flag of facts.flags) {
      if (!shared.has(flag.peer)) badges.push(el("span", { class: "tag tag-flag", "data-peer": flag.peer }, `⚑ ${flag.peer}`));
    }
  }
  return badges;
}

/** The queue's interstate facts as they stand (on every queue load: a reload or a new login shows the flags,
 * the shares and the requests still waiting for an answer, not only what arrives live afterwards). */
export async function loadQueueFacts() {
  const { incidents } = await api("interstate/queue");
  queueFacts.clear();
  for (const { folio, flags, escalations } of incidents) {
    rememberFlags(folio, flags);
    for (const escalation of escalations) {
      rememberEscalation(folio, escalation);
      announceInbound(folio, escalation);
    }
  }
}

/** A request for service from a peer just arrived: tell this centre's dispatchers (banner, keys). Once it is
 * answered (here or by a colleague) or cancelled by the peer, its banner goes (a newer banner stays). */
function announceInbound(folio, escalation) {
  if (escalation.direction !== "inbound") return;
  if (escalation.state !== "pending") {
    if (announced.get(escalation.id)) hideBanner(announced.get(escalation.id));
    return;
  }
  if (announced.get(escalation.id)) return;
  // A notice is not announced; a notice its sender turns into a request for service is, as a new request.
  if (escalation.kind === "request_for_service" && config.can_dispatch) {
    let text = t("inbound_banner", { peer: escalation.peer.name, remote: escalation.remote_folio, folio });
    if (escalation.reason) text += ` ${t("request_reason", { reason: escalation.reason })}`;
    announced.set(escalation.id, text);
    showBanner(text, "alert");
  }
}

/** Our request for service was just rejected (live): every dispatcher is told, not only one looking at the
 * incident — it stays ours, and its dispatch clock runs. */
function announceRejection(folio, escalation, before) {
  if (escalation.direction !== "outbound" || escalation.kind !== "request_for_service") return;
  if (escalation.state !== "rejected" || before === "rejected" || !config.can_dispatch) return;
  showBanner(t("outbound_rejected_banner", { peer: escalation.peer.name, folio, reason: escalation.reason || "—" }), "alert");
}

function label(group, value) {
  return (config.interstate && config.interstate[group] && config.interstate[group][value]) || value;
}

let peersCache = null;
async function enabledPeers() {
  if (!peersCache) peersCache = await api("interstate/peers");
  return peersCache;
}

/**
 * The interstate section of one incident (console detail or the intake's result): load(folio) fetches it,
 * applyEvent(envelope) keeps it live, handleKey(event) answers X/V/I/Y/R.
 */
export class InterstatePanel {
  constructor(container, { compact = false } = {}) {
    this.container = container;
    this.compact = compact; // the intake page: flags and the two keys only
    this.folio = null;
    this.data = null;
    this.busy = false;
    // Built once and moved into each render, so a re-render (a live event) never loses what is being typed.
    this.menuBox = this.compact ? null : this.buildMenu();
    this.rejectReason = el("input", { id: "esc-reject-reason", name: "reason", type: "text", maxlength: "2000",
      "aria-required": "true", placeholder: t("esc_reject_reason"), "aria-label": t("esc_reject_reason") });
  }

  /** Load the incident's interstate state; resolves to the flags offered (escalate / notify). */
  async load(folio) {
    this.folio = folio;
    this.data = null;
    this.reset();
    try {
      const data = await api(`incidents/${encodeURIComponent(folio)}/interstate`);
      if (folio !== this.folio) return [];
      this.data = data;
      rememberFlags(folio, data.flags);
      for (const escalation of data.escalations) rememberEscalation(folio, escalation);
      this.render();
      return this.offers();
    } catch (error) {
      if (folio === this.folio) this.container.replaceChildren(el("p", { class: "muted" }, error.message));
      return [];
    }
  }

  /** Focus the first offer's escalate button (after a call is saved: X, V or Enter act at once). */
  focusOffer() {
    const button = this.container.querySelector(".esc-flag button[data-action=escalate]");
    if (button) button.focus();
    return Boolean(button);
  }

  clear() {
    this.folio = null;
    this.data = null;
    this.reset();
  }

  reset() {
    this.container.replaceChildren();
    this.rejectReason.value = "";
    if (this.menuBox) {
      this.menuBox.querySelector("form").reset();
      this.menuBox.querySelector("form").hidden = true;
    }
  }

  /** An `interstate.*` console event; returns true when it concerned the shown incident. */
  applyEvent(envelope) {
    const payload = envelope.payload || {};
    if (envelope.type === "interstate.flagged") rememberFlags(payload.folio, payload.peers);
    else if (envelope.type === "interstate.escalation" && payload.escalation) {
      const before = factsOf(payload.folio).states[payload.escalation.peer.code];
      rememberEscalation(payload.folio, payload.escalation);
      announceInbound(payload.folio, payload.escalation);
      announceRejection(payload.folio, payload.escalation, before && before.state);
    } else return false;
    if (!this.data || payload.folio !== this.folio) return false;
    if (envelope.type === "interstate.flagged") this.data.flags = payload.peers || [];
    else {
      const list = this.data.escalations;
      const index = list.findIndex((e) => e.id === payload.escalation.id);
      if (index === -1) list.push(payload.escalation);
      else if (list[index].updated_at <= payload.escalation.updated_at) list[index] = payload.escalation;
    }
    this.render();
    return true;
  }

  // --- What can be done now -------------------------------------------------------------------
  /** Flagged peers this incident is not shared with (or whose share was rejected or cancelled): the X / V keys
   * act on the first. A share the peer closed is not offered: its incident usually closed with it; while
   * ours stays open, the escalate-anywhere menu (or the API) sends that peer a new request on it. */
  offers() {
    if (!this.data) return [];
    const shared = new Set(this.data.escalations.filter((e) => e.direction === "outbound" && !ENDED.has(e.state)).map((e) => e.peer.code));
    return this.data.flags.filter((flag) => !shared.has(flag.peer));
  }

  /** Our notice to a peer that may still become a request for service (X: the peer turns its copy into a
   * request its dispatchers answer; the same share, not a second one). */
  upgradable() {
    if (!this.data) return null;
    return this.data.escalations.find((e) => e.direction === "outbound" && e.kind === "request_awareness" && UPGRADABLE.has(e.state)) || null;
  }

  /** The inbound request for service waiting for this centre's answer. */
  pendingInbound() {
    if (!this.data || !config.can_dispatch) return null;
    return this.data.escalations.find((e) => e.direction === "inbound" && e.kind === "request_for_service" && ANSWERABLE.has(e.state)) || null;
  }

  // --- Commands ---------------------------------------------------------------------------------
  async run(action, success) {
    if (this.busy) return;
    this.busy = true;
    this.render();
    try {
      const escalation = await action();
      if (escalation && escalation.id !== undefined) this.applyEvent({ type: "interstate.escalation", payload: { folio: this.folio, escalation } });
      if (success) showBanner(success, "info");
    } catch (error) {
      bannerError(error);
    } finally {
      this.busy = false;
      this.render();
    }
  }

  escalate(peer, kind, reason = "") {
    const known = [...this.data.flags.map((f) => ({ code: f.peer, name: f.name })), ...(peersCache || [])];
    const name = (known.find((p) => p.code === peer) || {}).name || peer;
    return this.run(
      () => api(`incidents/${encodeURIComponent(this.folio)}/escalations`, { method: "POST", body: { peer, kind, reason } }),
      t(kind === "request_for_service" ? "escalated_to" : "notified_to", { peer: name }),
    );
  }

  act(escalation, action, body) {
    // A retry is sent at once: say so (the state may not change until the peer answers).
    const success = action === "retry" ? t("esc_retry_sent", { peer: escalation.peer.name }) : undefined;
    return this.run(() => api(`escalations/${escalation.id}/${action}`, { method: "POST", body }), success);
  }

  /** Ending a share is asked first (one stray click handed an accepted incident back), with an optional
   * reason that goes to the peer and to the timeline. */
  cancel(escalation) {
    const reason = window.prompt(t("esc_cancel_confirm", { peer: escalation.peer.name }), "");
    if (reason === null) return Promise.resolve();
    return this.act(escalation, "cancel", { reason: reason.trim() });
  }

  handleKey(event) {
    const key = event.key.toLowerCase();
    if (key === "i" && this.menuBox && this.folio) { this.openMenu(); return true; }
    if (!this.data || this.busy) return false;
    const offer = this.offers()[0];
    if (key === "x" && offer) { this.escalate(offer.peer, "request_for_service"); return true; }
    const notice = this.compact ? null : this.upgradable();
    if (key === "x" && notice && config.can_dispatch) { this.escalate(notice.peer.code, "request_for_service"); return true; }
    if (key === "v" && offer) { this.escalate(offer.peer, "request_awareness"); return true; }
    if (this.compact) return false;
    const inbound = this.pendingInbound();
    if (key === "y" && inbound) { this.act(inbound, "accept"); return true; }
    if (key === "r" && inbound) { this.rejectReason.focus(); return true; }
    return false;
  }

  async openMenu() {
    if (!this.menuBox) return;
    const form = this.menuBox.querySelector("form");
    const select = form.querySelector("select[name=peer]");
    if (!select.options.length) {
      try {
        const peers = await enabledPeers();
        if (!peers.length) {
          peersCache = null; // ask again next time: a peer may be enabled meanwhile
          showBanner(t("menu_no_peers"), "warning");
          return;
        }
        select.replaceChildren(...peers.map((p) => el("option", { value: p.code }, `${p.code} — ${p.name}`)));
      } catch (error) {
        bannerError(error);
        return;
      }
    }
    form.hidden = false;
    select.focus();
  }

  // --- Rendering --------------------------------------------------------------------------------
  render() {
    const d = this.data;
    if (!d) return;
    const parts = [];
    if (d.origin_center) {
      const inbound = d.escalations.find((e) => e.direction === "inbound");
      parts.push(el("p", { class: "esc-origin", id: "esc-origin" },
        el("strong", {}, t("origin_label")), " ",
        t("origin_text", { peer: inbound ? inbound.peer.name : d.origin_center, code: d.origin_center, folio: d.origin_folio }),
        // How old the emergency already was when it got here: the call's time at the sender (its EIDO).
        inbound && inbound.remote_call_at
          ? [" · ", el("span", { class: "esc-origin-call" }, t("origin_call", { code: d.origin_center, time: clock(inbound.remote_call_at) }))]
          : null));
      // The origin withdrew its request: said, not acted on (the incident stays open; its dispatcher decides).
      if (inbound && inbound.state === "cancelled") {
        parts.push(el("p", { class: "esc-origin-cancelled", id: "esc-origin-cancelled", role: "status" },
          t("origin_cancelled_text", { peer: inbound.peer.name })));
      }
    }
    const offers = this.offers();
    for (const [index, flag] of offers.entries()) parts.push(this.flagBox(flag, index === 0));
    const inbound = this.compact ? null : this.pendingInbound();
    if (inbound) parts.push(this.answerBox(inbound));
    for (const escalation of d.escalations) parts.push(this.escalationBox(escalation));
    if (this.menuBox) parts.push(this.menuBox);
    this.container.replaceChildren(...parts);
    this.container.hidden = !parts.length;
  }

  flagBox(flag, first) {
    const where = flag.reason === "inside"
      ? t("flag_inside", { peer: flag.name })
      : t("flag_near", { peer: flag.name, km: Number(flag.distance_km).toFixed(1) });
    return el("div", { class: "esc-flag", role: "group", "data-peer": flag.peer, "aria-label": where },
      el("p", {}, el("strong", {}, "⚑ "), where),
      el("button", { type: "button", class: "primary", "data-action": "escalate", disabled: this.busy || undefined,
        onclick: () => this.escalate(flag.peer, "request_for_service") },
        t("escalate_to", { peer: flag.peer }), first ? el("kbd", {}, "X") : null),
      " ",
      el("button", { type: "button", "data-action": "notify", disabled: this.busy || undefined,
        onclick: () => this.escalate(flag.peer, "request_awareness") },
        t("notify_to", { peer: flag.peer }), first ? el("kbd", {}, "V") : null));
  }

  answerBox(escalation) {
    const reason = this.rejectReason;
    return el("div", { class: "esc-answer", role: "group", "data-escalation": escalation.id },
      el("p", {}, t("answer_prompt", { peer: escalation.peer.name, folio: escalation.remote_folio })),
      escalation.reason ? el("p", { class: "esc-reason" }, t("request_reason", { reason: escalation.reason })) : null,
      el("button", { type: "button", class: "primary", "data-action": "accept", disabled: this.busy || undefined,
        onclick: () => this.act(escalation, "accept") }, t("esc_accept"), el("kbd", {}, "Y")),
      el("form", { class: "field-row", onsubmit: (event) => {
        event.preventDefault();
        if (!refuseBlank(reason)) this.act(escalation, "reject", { reason: reason.value.trim() });
      } }, reason, el("button", { type: "submit", class: "danger", "data-action": "reject", disabled: this.busy || undefined }, t("esc_reject"), el("kbd", {}, "R"))));
  }

  escalationBox(e) {
    const direction = e.direction === "outbound" ? t("esc_outbound", { peer: e.peer.name }) : t("esc_inbound", { peer: e.peer.name });
    const rows = [
      el("p", {},
        // A notice is taken as it arrives: "accepted" there means received, not that anyone accepted anything.
        el("span", { class: `status-pill st-esc-${e.state}`, "data-state": e.state },
          e.kind === "request_awareness" && e.state === "accepted" ? t("esc_notice_received") : label("states", e.state)), " ",
        el("strong", {}, direction), " · ", label("kinds", e.kind),
        e.remote_folio ? [" · ", el("span", { class: "mono", "data-remote-folio": e.remote_folio }, e.remote_folio)] : null,
        e.remote_status ? [" · ", t("remote_status", { status: config.incident_statuses[e.remote_status] || e.remote_status })] : null,
        " · ", el("time", {}, clock(e.updated_at))),
    ];
    // An error is on the share until a send succeeds, whatever its state: a note stuck after the peer accepted
    // is as much a problem as an unsent request.
    if (e.last_error && LIVE.has(e.state)) {
      rows.push(el("p", { class: "esc-error", role: "status" }, t("last_error", { attempts: e.attempts, error: e.last_error })));
    }
    if (e.peer.enabled === false && LIVE.has(e.state)) { // an administrator cut the link: nothing goes or comes
      rows.push(el("p", { class: "esc-error", role: "status", "data-peer-disabled": e.peer.code }, t("peer_disabled", { peer: e.peer.name })));
    }
    if (e.state === "rejected" && e.reason) rows.push(el("p", { class: "muted" }, t("rejected_reason", { reason: e.reason })));
    if (e.remote_resources && e.remote_resources.length) {
      rows.push(el("table", { class: "esc-units" },
        el("caption", {}, t("remote_units", { peer: e.peer.code })),
        el("tbody", {}, e.remote_resources.map((r) =>
          el("tr", { "data-resource": r.id, class: r.active ? "" : "muted" },
            el("td", { class: "mono" }, r.name),
            el("td", {}, el("span", { class: `status-pill st-${r.status_internal}` }, config.interstate.resource_statuses[r.status_internal] || r.status)))))));
    }
    if (config.can_dispatch && !this.compact && e === this.upgradable()) {
      rows.push(el("p", { class: "esc-actions" },
        el("button", { type: "button", class: "primary", "data-action": "upgrade", disabled: this.busy || undefined,
          onclick: () => this.escalate(e.peer.code, "request_for_service") },
          t("esc_upgrade", { peer: e.peer.code }), el("kbd", {}, "X"))));
    }
    if (config.can_supervise && !this.compact && e.direction === "outbound" && LIVE.has(e.state)) {
      const stuck = e.state === "pending" || e.state === "failed" || Boolean(e.last_error); // something to (re)send
      rows.push(el("p", { class: "esc-actions" },
        stuck ? el("button", { type: "button", class: "mini", "data-action": "retry", disabled: this.busy || undefined, onclick: () => this.act(e, "retry") }, t("esc_retry")) : null,
        " ",
        el("button", { type: "button", class: "mini danger", "data-action": "cancel", disabled: this.busy || undefined, onclick: () => this.cancel(e) }, t("esc_cancel"))));
    }
    return el("div", { class: `esc esc-${e.direction}`, "data-escalation": e.id, "data-peer": e.peer.code, "data-state": e.state }, rows);
  }

  buildMenu() {
    const form = el("form", { id: "esc-menu", class: "esc-menu", hidden: true, onsubmit: (event) => {
      event.preventDefault();
      const data = new FormData(form);
      form.reset();
      form.hidden = true;
      this.escalate(data.get("peer"), data.get("kind"), String(data.get("reason") || "").trim());
    } },
    el("label", {}, t("menu_peer"), " ", el("select", { name: "peer", required: true })),
    el("label", {}, t("menu_kind"), " ", el("select", { name: "kind" },
      el("option", { value: "request_for_service" }, label("kinds", "request_for_service")),
      el("option", { value: "request_awareness" }, label("kinds", "request_awareness")))),
    el("input", { name: "reason", type: "text", maxlength: "2000", placeholder: t("menu_reason"), "aria-label": t("menu_reason") }),
    el("button", { type: "submit", class: "primary" }, t("menu_send")));
    return el("div", { class: "esc-menu-box" },
      el("button", { type: "button", class: "mini", "data-action": "menu", onclick: () => this.openMenu() }, t("menu_open"), el("kbd", {}, "I")),
      form);
  }
}
