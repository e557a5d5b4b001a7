// Shared helpers of the console pages: page config, translated strings, REST calls, time formatting,
// banner, audible alert. No framework, no build step.

export const config = JSON.parse(document.getElementById("cad-config").textContent);

/** Translated UI string (rendered server-side through Django gettext), with %(name)s substitution. */
export function t(key, params = {}) {
  const text = (config.strings && config.strings[key]) || key;
  return text.replace(/%\((\w+)\)s/g, (_, name) => (name in params ? String(params[name]) : ""));
}

function csrfToken() {
  // The cookie's name is per centre (two centres on one host share a browser's cookies): the page says it.
  const meta = document.querySelector('meta[name="csrf-cookie"]');
  const name = ((meta && meta.content) || "csrftoken").replace(/[^\w-]/g, "");
  const match = document.cookie.match(new RegExp(`(?:^|;\\s*)${name}=([^;]+)`));
  return match ? decodeURIComponent(match[1]) : "";
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "error";
    this.fields = (body && body.fields) || {};
  }

  /** For a banner, where no field is there to mark: the fields' own messages (instead of the generic "revise
   * los campos marcados" of a validation error), after the message of any other error. */
  get summary() {
    const said = Object.values(this.fields).flat().filter((item) => typeof item === "string");
    if (!said.length) return this.message;
    return this.code === "invalid" ? said.join(" ") : `${this.message} ${said.join(" ")}`;
  }
}

/** Call the REST API with the session cookie and the CSRF header; JSON in, JSON out. */
/** Every row of a paginated list: follows `next` links until the last page. */
export async function apiAll(path) {
  const rows = [];
  let next = path;
  while (next) {
    const page = await api(next);
    rows.push(...page.results);
    next = page.next ? page.next.slice(page.next.indexOf("/api/v1/") + "/api/v1/".length) : null;
  }
  return rows;
}

export async function api(path, { method = "GET", body, signal, headers: extra = {} } = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRFToken"] = csrfToken();
  }
  const response = await fetch(`/api/v1/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      // Not our JSON: a server error page or a proxy's (HTML) is no message for a dispatcher.
      data = { message: response.ok ? text.slice(0, 200) : t("server_error", { status: response.status }) };
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const TZ = (config.center && config.center.timezone) || "America/Mexico_City"; // the centre's zone
const locale = document.documentElement.lang || "es-MX";
const timeFormat = new Intl.DateTimeFormat(locale, {
  timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const dateTimeFormat = new Intl.DateTimeFormat(locale, {
  timeZone: TZ, day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

/** Clock time in the centre's time zone (times are stored and sent in UTC). */
export function clock(iso) {
  return iso ? timeFormat.format(new Date(iso)) : "—";
}
export function dateTime(iso) {
  return iso ? dateTimeFormat.format(new Date(iso)) : "—";
}

/** 75 s → "01:15"; 3725 s → "1:02:05". */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/** "ok" under 75 % of the target, "warn" up to it, "over" past it (the CSS adds an icon, not only colour). */
export function timerLevel(seconds, target) {
  if (!target) return "neutral";
  if (seconds > target) return "over";
  if (seconds > target * 0.75) return "warn";
  return "ok";
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const banner = document.getElementById("banner");
let bannerTimer = null;
let standing = null; // the sticky banner (a lost or degraded connection) while its condition lasts

/** Show a banner (role=alert). level: info | warning | error | alert. A passing one (not sticky) goes after
 * 8 s and gives the place back to the standing sticky one, which only hideBanner() ends. */
export function showBanner(message, level = "warning", { sticky = false } = {}) {
  if (sticky) standing = { message, level };
  banner.textContent = message;
  banner.className = `banner banner-${level}`;
  banner.hidden = false;
  clearTimeout(bannerTimer);
  if (!sticky) {
    bannerTimer = setTimeout(() => {
      if (standing) showBanner(standing.message, standing.level, { sticky: true });
      else banner.hidden = true;
    }, 8000);
  }
}
/** A failed command, said in a banner: an ApiError's fields' messages (see `summary`), else its message. */
export function bannerError(error) {
  showBanner(error.summary || error.message, "error");
}
/** The page's connection indicator (`node`, #conn) and banners, driven by a RealtimeClient: pass the returned
 * onState and onNotice to it. A page never goes stale in silence: a lost socket, a refused one and degraded
 * live updates (Redis down) are said out loud until they are over. */
export function connectionStatus(node) {
  function onState(status) {
    const labels = { connecting: t("conn_connecting"), open: t("conn_open"), closed: t("conn_closed"), refused: t("conn_refused"), ended: t("conn_ended") };
    node.textContent = labels[status] || status;
    node.className = `conn conn-${status}`;
    node.dataset.state = status;
    if (status === "closed") showBanner(t("conn_lost_banner"), "warning", { sticky: true });
    if (status === "refused") showBanner(t("conn_refused"), "error", { sticky: true });
    if (status === "ended") showBanner(t("conn_ended_banner"), "error", { sticky: true });
    if (status === "open") hideBanner();
  }
  function onNotice(notice) {
    if (notice.code === "resync_client") {
      showBanner(t("resync_banner"), "warning");
      return;
    }
    if (notice.code === "live_degraded") { // Redis down: updates come from the database every few seconds
      node.textContent = t("conn_degraded");
      node.className = "conn conn-degraded";
      node.dataset.state = "degraded";
      showBanner(notice.message, "warning", { sticky: true });
      return;
    }
    if (notice.code === "live_restored") {
      onState("open");
      return;
    }
    if (notice.level === "info") return;
    showBanner(notice.message || t("overload_banner"), notice.level === "error" ? "error" : "warning");
  }
  return { onState, onNotice };
}

/** A blank (or only spaces) text field: say so and put the cursor back instead of doing nothing. */
export function refuseBlank(input) {
  if (input.value.trim()) return false;
  showBanner(t("text_missing"), "warning");
  input.focus();
  return true;
}
/** Hide the banner; with `message`, only while it still says that (a newer banner stays). */
export function hideBanner(message) {
  if (message !== undefined && banner.textContent !== message) return;
  if (standing && (message === undefined || standing.message === message)) standing = null;
  clearTimeout(bannerTimer);
  if (standing) showBanner(standing.message, standing.level, { sticky: true });
  else banner.hidden = true;
}

let audio = null;
function audioContext() {
  if (!audio) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    audio = new Ctx();
  }
  return audio;
}
// Browsers start audio suspended until a user gesture: unlock it on the first key or click.
for (const type of ["keydown", "pointerdown"]) {
  window.addEventListener(type, () => { const ctx = audioContext(); if (ctx && ctx.state === "suspended") ctx.resume(); }, { once: true });
}

/** Three short tones (WebAudio): a new high-priority incident. */
export function beep() {
  const ctx = audioContext();
  if (!ctx) return;
  const start = ctx.currentTime;
  for (let i = 0; i < 3; i++) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = i % 2 ? 660 : 880;
    gain.gain.setValueAtTime(0.0001, start + i * 0.22);
    gain.gain.exponentialRampToValueAtTime(0.25, start + i * 0.22 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.22 + 0.18);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start + i * 0.22);
    osc.stop(start + i * 0.22 + 0.2);
  }
}

/** True when a key event comes from a text field (global shortcuts must not fire there). */
export function typing(event) {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}
