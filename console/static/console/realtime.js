// The console's websocket client: subscribe with the last seq per stream, detect gaps and resume,
// reconnect with backoff, reload snapshots on hello/resync. Applies each seq once, in order.
// Heartbeats carry each stream's current seq: behind → resume; ahead (database restored) → reload.
// A socket silent for 4 heartbeats is presumed dead and reconnected.
//
// Test hooks: window.cadSocket (the current WebSocket), window.cadSeqLog ({stream: [applied seqs]}).

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
const CLOSE_FORBIDDEN = 4403;
const CLOSE_SESSION_ENDED = 4401;

export class RealtimeClient {
  /**
   * @param {object} options
   * @param {string} options.path            websocket path, e.g. "/ws/console/"
   * @param {object} options.streams         {stream: {snapshot: async () => void, apply: (envelope) => void}}
   * @param {function} options.onState       (state: "connecting"|"open"|"closed"|"refused") => void
   * @param {function} options.onNotice      (notice) => void
   * @param {number} options.heartbeatS      the server's heartbeat interval (seconds)
   * @param {boolean} options.leaveWhenSessionEnds  go to the login page when the session ends (else the
   *   state "ended": a page holding unsaved typing, the intake, stays to be saved after a login elsewhere)
   */
  constructor({ path, streams, onState = () => {}, onNotice = () => {}, heartbeatS = 10, leaveWhenSessionEnds = true }) {
    this.leaveWhenSessionEnds = leaveWhenSessionEnds;
    this.path = path;
    this.silenceMs = 4 * heartbeatS * 1000;
    this.lastMessageAt = Date.now();
    this.streams = streams;
    this.onState = onState;
    this.onNotice = onNotice;
    this.last = {}; // stream -> last applied seq (null until a snapshot is loaded)
    this.loading = {}; // stream -> events received while its snapshot loads
    this.resuming = {}; // stream -> seq we asked to resume from
    this.attempt = 0;
    this.stopped = false;
    for (const name of Object.keys(streams)) this.last[name] = null;
    window.cadSeqLog = Object.fromEntries(Object.keys(streams).map((s) => [s, []]));
  }

  start() {
    this.stopped = false;
    this.connect();
    this.watchdog = setInterval(() => {
      const socket = this.socket;
      if (!socket) return;
      const silent = socket.readyState === WebSocket.OPEN && Date.now() - this.lastMessageAt > this.silenceMs;
      const stuck = socket.readyState === WebSocket.CONNECTING && Date.now() - this.connectingSince > this.silenceMs;
      if (silent || stuck) this.abandon(socket);
    }, 2000);
  }

  /** A half-open or wedged socket (a frozen server, a dropped link): close() alone leaves it CLOSING, and its
   * close event waits for the TCP connection — as long as the server stays frozen, the console would say
   * "online" and show nothing new. Stop listening to it, say so, and reconnect (resuming from the last seq). */
  abandon(socket) {
    this.socket = null;
    socket.close();
    this.onState("closed");
    this.reconnectLater();
  }

  reconnectLater() {
    if (this.stopped) return;
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    setTimeout(() => this.connect(), delay * (0.75 + Math.random() * 0.5));
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchdog);
    if (this.socket) this.socket.close();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${this.path}`);
    this.socket = socket;
    this.connectingSince = Date.now();
    window.cadSocket = socket;
    this.onState("connecting");
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.ended = false;
      this.lastMessageAt = Date.now();
      this.onState("open");
      this.resuming = {};
      const wanted = {};
      for (const name of Object.keys(this.streams)) wanted[name] = this.last[name];
      this.send({ type: "subscribe", streams: wanted });
    });
    let opened = false;
    socket.addEventListener("open", () => { opened = true; });
    socket.addEventListener("message", (event) => {
      this.lastMessageAt = Date.now();
      this.receive(JSON.parse(event.data));
    });
    socket.addEventListener("close", async (event) => {
      if (socket !== this.socket) return;
      // The server refuses before accepting: ASGI clients see 4403, browsers a failed handshake (1006).
      if (!this.leaveWhenSessionEnds && (event.code === CLOSE_SESSION_ENDED || this.ended)) {
        // Logged out: the page says so, keeps what was typed, and tries again now and then, so a login in
        // another tab (the same cookie) brings it back live.
        this.ended = true;
        this.onState("ended");
        if (!this.stopped) setTimeout(() => this.connect(), BACKOFF_MS[BACKOFF_MS.length - 1]);
        return;
      }
      if (event.code === CLOSE_SESSION_ENDED) {
        this.onState("refused");
        location.assign(`/login/?next=${encodeURIComponent(location.pathname + location.search)}`);
        return; // logged out, deactivated or role changed: log in again
      }
      if (event.code === CLOSE_FORBIDDEN || (!opened && (await this.refused()))) {
        this.onState("refused");
        return; // not allowed (or the session expired): do not hammer the server
      }
      this.onState("closed");
      this.reconnectLater();
    });
  }

  /** After a failed handshake: is it our credentials (401/403) rather than the network? */
  async refused() {
    try {
      const response = await fetch("/api/v1/incident-types/?limit=1", { credentials: "same-origin" });
      return response.status === 401 || response.status === 403;
    } catch {
      return false;
    }
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  async loadSnapshot(stream, seq) {
    this.loading[stream] = [];
    try {
      await this.streams[stream].snapshot();
    } catch (error) {
      this.onNotice({ level: "error", code: "snapshot_failed", message: String(error.message || error) });
    }
    const pending = this.loading[stream] || [];
    delete this.loading[stream];
    this.last[stream] = seq;
    document.dispatchEvent(new CustomEvent("cad:snapshot", { detail: { stream } }));
    for (const envelope of pending) this.receiveEvent(envelope);
  }

  receive(message) {
    switch (message.type) {
      case "hello":
        // Subscribed with no seq: load the state by REST, then apply what came after `seq`.
        this.loadSnapshot(message.stream, message.seq);
        return;
      case "resync":
        this.onNotice({ level: "warning", code: "resync_client", stream: message.stream });
        this.loadSnapshot(message.stream, message.seq);
        return;
      case "notice":
        this.onNotice(message);
        return;
      case "error":
        this.onNotice({ level: "error", ...message });
        return;
      case "pong":
        return;
      case "heartbeat":
        this.heartbeat(message.stream, message.seq);
        return;
      default:
        if (message.stream && typeof message.seq === "number") this.receiveEvent(message);
    }
  }

  heartbeat(stream, seq) {
    if (!(stream in this.streams) || stream in this.loading) return;
    const last = this.last[stream];
    if (last === null) return;
    if (last > seq) {
      // Ahead of the server: its database went back (restored). Reload and continue from its seq.
      this.onNotice({ level: "warning", code: "resync_client", stream });
      this.loadSnapshot(stream, seq);
    } else if (last < seq && this.resuming[stream] !== last) {
      this.resuming[stream] = last;
      this.send({ type: "resume", stream, seq: last });
    }
  }

  receiveEvent(envelope) {
    const stream = envelope.stream;
    if (!(stream in this.streams)) return;
    if (stream in this.loading) {
      this.loading[stream].push(envelope);
      return;
    }
    const last = this.last[stream];
    if (last === null) return; // no baseline yet; the snapshot will cover it
    const first = typeof envelope.first_seq === "number" ? envelope.first_seq : envelope.seq;
    if (envelope.seq <= last) return; // already applied (replay/live overlap)
    if (first > last + 1) {
      // Gap: ask for everything after `last` (the server replays in order); drop this one meanwhile.
      if (this.resuming[stream] !== last) {
        this.resuming[stream] = last;
        this.send({ type: "resume", stream, seq: last });
      }
      return;
    }
    this.last[stream] = envelope.seq;
    delete this.resuming[stream];
    window.cadSeqLog[stream].push(envelope.seq);
    try {
      this.streams[stream].apply(envelope);
      // Other modules of the page (e.g. the sensor panels) follow the same stream without a socket of their own.
      document.dispatchEvent(new CustomEvent("cad:event", { detail: envelope }));
    } catch (error) {
      console.error("apply failed", envelope, error); // a rendering bug must not stop the stream
    }
  }
}
