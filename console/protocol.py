"""The console stream protocol as a pure state machine: no sockets, no database, no event loop.

`ConsoleSession` decides, for one console socket, what to send and what to do next; the transport
(console.consumers.ConsoleConsumer) performs the I/O and feeds the results back. Every method returns a list
of actions the transport carries out in order:

  Send(text)                  send this JSON text frame
  ArmGapTimer(stream, delay)  call `gap_due(stream)` after `delay` s (an event arrived ahead of a missing seq)
  CancelGapTimer(stream)      the missing seq arrived: forget the timer
  ArmAvlFlush(delay)          call `avl_flush_due()` after `delay` s (coalesced AVL waits for its interval)
  Replay(stream, after, why)  read the table after `after` (`replay_rows`), holding live events meanwhile
  VerifySeq(stream)           read the stream's seq afresh and call `verified(stream, seq)`

Wire protocol (JSON text frames):

client → server
  {"type": "subscribe", "streams": {"console": <last seq | null>, "avl": <last seq | null>}}
  {"type": "resume", "stream": "console", "seq": <last seq applied>}
  {"type": "ping", "t": <anything>}
server → client
  event envelopes {type, id, stream, seq, time, payload} (AVL: coalesced, with `first_seq`)
  {"type": "hello", "stream": s, "seq": n}         (subscribed with null: load the snapshot by REST)
  {"type": "resync", "stream": s, "seq": n}        (too far behind: reload the snapshot, continue after n)
  {"type": "notice", "level": "warning"|"info", "code": ..., "message": ...}
      (codes include live_degraded / live_restored: the channel layer stopped or resumed live delivery)
  {"type": "error", "code": ..., "message": ...}
  {"type": "pong", "t": ...}
  {"type": "heartbeat", "stream": s, "seq": n}     (every CAD["HEARTBEAT_S"]: the stream's current seq)

Ordering: while a replay (or the seq for a hello) is being read, live events wait in `pending`
(`hold()` … `release()`), so a socket's stream is always in seq order. Live events with seq <= the last
one sent are dropped; one ahead of a missing seq is held `reorder_wait_s` (broadcasts from several server
processes may arrive out of order), then the table fills the gap.

Heartbeats repair what no later event reveals: a console behind the stream's current seq (its last broadcast
was lost) is filled from the table after the same short wait; a console AHEAD of the database (restored from
a backup) is told to resync once a fresh read confirms it.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext as _

from accounts.permissions import CONSOLE_ROLES
from cad.models import EventStream

CONSOLE = EventStream.Name.CONSOLE.value
AVL = EventStream.Name.AVL.value
# Which roles may read each stream (all console roles read both today).
STREAM_ROLES = {CONSOLE: CONSOLE_ROLES, AVL: CONSOLE_ROLES}


@dataclass(frozen=True)
class Send:
    text: str


@dataclass(frozen=True)
class ArmGapTimer:
    stream: str
    delay: float


@dataclass(frozen=True)
class CancelGapTimer:
    stream: str


@dataclass(frozen=True)
class ArmAvlFlush:
    delay: float


@dataclass(frozen=True)
class Replay:
    stream: str
    after_seq: int
    reason: str  # subscribe | resume | gap


@dataclass(frozen=True)
class VerifySeq:
    stream: str


@dataclass(frozen=True)
class Subscribe:
    """A client request the transport must serve with I/O (join the group, read the table)."""

    stream: str
    seq: int | None


@dataclass(frozen=True)
class Resume:
    stream: str
    seq: int


def send(frame: dict) -> Send:
    return Send(json.dumps(frame))


def _valid_seq(seq) -> bool:
    return seq is None or (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0)


def error_frame(code: str, message: str, **extra) -> Send:
    return send({"type": "error", "code": code, "message": message, **extra})


def notice_frame(level: str, code: str, message: str, **extra) -> Send:
    return send({"type": "notice", "level": level, "code": code, "message": message, **extra})


def resync_frames(stream: str, current: int) -> list:
    """The client reloads its snapshot and continues after `current`."""
    return [
        send({"type": "resync", "stream": stream, "seq": current}),
        notice_frame(
            "warning",
            "resync",
            _("La consola se atrasó demasiado; se recargó el estado completo."),
            stream=stream,
        ),
    ]


class ConsoleSession:
    """Per-socket protocol state. `metrics` is a dict of counters it increments (process-wide in production)."""

    def __init__(
        self,
        *,
        role: str,
        replay_limit: int,
        metrics: dict,
        clock: Callable[[], float],
        avl_flush_interval: float = 1.0,
        reorder_wait_s: float = 0.25,
        encode_coalesced: Callable[[dict], str] = json.dumps,
    ):
        self.role = role
        self.replay_limit = replay_limit
        self.metrics = metrics
        self.clock = clock
        self.avl_flush_interval = avl_flush_interval
        self.reorder_wait_s = reorder_wait_s
        self.encode_coalesced = encode_coalesced  # JSON of a coalesced AVL envelope (the hub shares it)
        self.joined: set[str] = set()
        self.last_sent: dict[str, int] = {}
        self.pending: list | None = None  # live events held back while a replay/hello is being prepared
        self.held: dict[str, dict[int, tuple]] = {}  # stream -> seq -> live event ahead of a missing seq
        self.gap_armed: set[str] = set()  # streams with a gap timer running
        self.expected: dict[
            str, int
        ] = {}  # stream -> seq a heartbeat said exists (checked when the timer fires)
        # AVL coalescing state: newest position per unit since the last flush.
        self.avl_buffer: dict[int, list] = {}
        self.avl_first_seq: int | None = None
        self.avl_high = 0
        self.avl_last_time = None
        self.avl_last_id = None
        self.avl_last_flush = float("-inf")
        self.avl_flush_armed = False

    # --- Client messages -------------------------------------------------------------------------
    def client_message(self, content) -> list:
        """Classify a decoded client frame: answers to send now, or Subscribe/Resume requests to serve."""
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "subscribe" and isinstance(content.get("streams"), dict):
            requests = []
            for stream, seq in content["streams"].items():
                if stream not in STREAM_ROLES or self.role not in STREAM_ROLES[stream] or not _valid_seq(seq):
                    requests.append(
                        error_frame(
                            "stream_forbidden", _("No puede suscribirse a este flujo."), stream=str(stream)
                        )
                    )
                else:
                    requests.append(Subscribe(stream, seq))
            return requests
        if kind == "resume":
            stream, seq = content.get("stream"), content.get("seq")
            if stream not in self.last_sent or seq is None or not _valid_seq(seq):
                return [error_frame("bad_resume", _("Reanudación inválida."))]
            self.metrics["resumes"] += 1
            return [Resume(stream, seq)]
        if kind == "ping":
            return [send({"type": "pong", "t": content.get("t")})]
        return [error_frame("bad_message", _("Mensaje no reconocido."))]

    def hello(self, stream: str, current: int) -> list:
        """Subscribed with null at the stream's `current` seq: the client loads its snapshot by REST."""
        self.last_sent[stream] = current
        if stream == AVL:
            self._avl_reset(current)
        return [send({"type": "hello", "stream": stream, "seq": current})]

    def start_at(self, stream: str, seq: int) -> Replay:
        """Subscribed with the last seq the client applied: replay from there."""
        self.last_sent[stream] = seq
        if stream == AVL:
            self._avl_reset(seq)
        return Replay(stream, seq, "subscribe")

    # --- Holding live events while the table is read ---------------------------------------------
    def hold(self) -> None:
        self.pending = [] if self.pending is None else self.pending

    def release(self) -> list:
        """Forward what arrived live while a replay was prepared, then go back to direct delivery."""
        actions = []
        while self.pending:
            envelope, text = self.pending.pop(0)
            actions += self._forward(envelope, text)
        self.pending = None
        return actions

    # --- Live events -------------------------------------------------------------------------------
    def live(self, envelope: dict, text: str | None) -> list:
        """A live event (`text` is its JSON when the hub encoded it once for every console)."""
        if self.pending is not None:
            self.pending.append((envelope, text))
            return []
        return self._forward(envelope, text)

    def _forward(self, envelope: dict, text: str | None) -> list:
        stream = envelope.get("stream")
        if stream not in self.last_sent:  # not subscribed to this stream
            return []
        if stream == AVL:
            return self._avl_add([envelope])
        seq = envelope["seq"]
        if seq <= self.last_sent[stream]:
            self.metrics["duplicates_dropped"] += 1
            return []
        if seq > self.last_sent[stream] + 1:
            # Ahead of a missing seq: with several server processes, broadcasts may arrive out of order.
            # Hold it briefly; the missing one usually follows, else the gap is filled from the table.
            self.held.setdefault(stream, {})[seq] = (envelope, text)
            if stream in self.gap_armed:
                return []
            self.gap_armed.add(stream)
            return [ArmGapTimer(stream, self.reorder_wait_s)]
        actions = [self._send_live(stream, envelope, text)]
        held = self.held.get(stream)
        while held and (self.last_sent[stream] + 1) in held:
            actions.append(self._send_live(stream, *held.pop(self.last_sent[stream] + 1)))
        if held:
            for stale in [s for s in held if s <= self.last_sent[stream]]:
                del held[stale]
        if not held and stream in self.gap_armed:
            self.gap_armed.discard(stream)
            actions.append(CancelGapTimer(stream))
        return actions

    def _send_live(self, stream: str, envelope: dict, text: str | None) -> Send:
        self.last_sent[stream] = envelope["seq"]
        return Send(text if text is not None else json.dumps(envelope))

    def gap_due(self, stream: str) -> list:
        """The reorder wait is over: if a missing seq still has not come, fill the gap from the table."""
        self.gap_armed.discard(stream)
        last = self.last_sent[stream]
        expected = self.expected.pop(stream, 0)
        self.held[stream] = {seq: event for seq, event in self.held.get(stream, {}).items() if seq > last}
        high = self.avl_high if stream == AVL else last
        if not self.held[stream] and high >= expected:
            return []
        if self.pending is not None:  # a replay is under way; look again after it
            self.expected[stream] = expected
            self.gap_armed.add(stream)
            return [ArmGapTimer(stream, self.reorder_wait_s)]
        self.held[stream] = {}
        self.metrics["gaps_filled"] += 1
        return [Replay(stream, last, "gap")]

    # --- Live delivery state -----------------------------------------------------------------------
    def live_state(self, live: bool, *, every_s: float) -> list:
        """From the hub: the channel layer (Redis) stopped, or resumed, delivering live events. Meanwhile the
        heartbeat fills the console from the table every `every_s` seconds: the console says so."""
        if live:
            return [notice_frame("info", "live_restored", _("Tiempo real restablecido."))]
        message = _("Tiempo real interrumpido: la consola se actualiza desde la base de datos cada %(s)s s.")
        return [notice_frame("warning", "live_degraded", message % {"s": round(every_s)})]

    # --- Heartbeat ---------------------------------------------------------------------------------
    def heartbeat(self, stream: str, current: int) -> list:
        """The stream's current seq, read from the table by the process hub."""
        if stream not in self.last_sent or self.pending is not None:
            return []
        high = self.avl_high if stream == AVL else self.last_sent[stream]
        if current > high:  # behind: the broadcasts may still be in flight, so wait as for a gap
            self.expected[stream] = max(self.expected.get(stream, 0), current)
            if stream in self.gap_armed:
                return []
            self.gap_armed.add(stream)
            return [ArmGapTimer(stream, self.reorder_wait_s)]
        if current < high:  # ahead, or a live event overtook the read: confirm with a fresh read
            return [VerifySeq(stream)]
        if self.last_sent[stream] != current:  # a coalesced AVL flush is pending
            return []
        return [send({"type": "heartbeat", "stream": stream, "seq": current})]

    def verified(self, stream: str, current: int) -> list:
        """A fresh read of the stream's seq: still behind what this console was sent means the database
        went back (restored): the console reloads its snapshot and continues from `current`."""
        high = self.avl_high if stream == AVL else self.last_sent.get(stream, 0)
        if current >= high:
            return []
        self.metrics["resyncs"] += 1
        self.held[stream] = {}
        self.last_sent[stream] = current
        if stream == AVL:
            self._avl_reset(current)
        return resync_frames(stream, current)

    # --- Replay ------------------------------------------------------------------------------------
    def replay_rows(self, replay: Replay, rows: list[dict], current: int) -> list:
        """Up to replay_limit+1 envelopes read after `replay.after_seq` (more than the limit: resync), and
        the stream's current seq. Live events are held meanwhile (`hold()`), so order is kept."""
        stream, after_seq = replay.stream, replay.after_seq
        # More than the limit, or the oldest needed events were pruned from the table: reload instead.
        if len(rows) > self.replay_limit or (rows and rows[0]["seq"] > after_seq + 1):
            self.metrics["resyncs"] += 1
            self.last_sent[stream] = max(self.last_sent[stream], current)
            if stream == AVL:
                self._avl_reset(self.last_sent[stream])
            return resync_frames(stream, current)
        if not rows:
            return []
        self.metrics["replays"] += 1
        self.metrics["replayed_events"] += len(rows)
        if stream == AVL:
            # Replay restarts the AVL stream from the client's seq: forget what was sent after it.
            self._avl_reset(after_seq, keep_buffer=False)
            actions = self._avl_add(rows, flush_now=True)
        else:
            actions = []
            for envelope in rows:
                if envelope["seq"] > self.last_sent[stream]:  # another replay may have sent it already
                    self.last_sent[stream] = envelope["seq"]
                    actions.append(send(envelope))
        if replay.reason == "gap":
            return actions  # filled silently: the console never saw the hole
        if replay.reason == "resume":
            message = _("Se recuperaron %(n)d eventos perdidos.") % {"n": len(rows)}
            return [*actions, notice_frame("warning", "replayed", message, stream=stream)]
        message = _("Reconectado: %(n)d eventos recuperados.") % {"n": len(rows)}
        return [*actions, notice_frame("info", "replayed", message, stream=stream)]

    # --- AVL coalescing ------------------------------------------------------------------------------
    def _avl_reset(self, seq: int, *, keep_buffer: bool = False) -> None:
        if not keep_buffer:
            self.avl_buffer = {}
            self.avl_first_seq = None
        self.avl_high = seq
        self.last_sent[AVL] = seq

    def _avl_add(self, envelopes: list[dict], *, flush_now: bool = False) -> list:
        for envelope in envelopes:
            if envelope["seq"] <= self.avl_high:
                self.metrics["duplicates_dropped"] += 1
                continue
            if self.avl_first_seq is None:
                self.avl_first_seq = envelope["seq"]
            for position in envelope.get("payload", {}).get("positions", ()):
                self.avl_buffer[position[0]] = position
            self.avl_high = envelope["seq"]
            self.avl_last_time = envelope.get("time")
            self.avl_last_id = envelope.get("id")
        if self.avl_first_seq is None:
            return []
        if flush_now:
            return self._avl_flush()
        if self.avl_flush_armed:
            return []  # a flush is already scheduled; it will carry these positions
        delay = self.avl_last_flush + self.avl_flush_interval - self.clock()
        if delay <= 0:
            return self._avl_flush()
        self.avl_flush_armed = True
        return [ArmAvlFlush(delay)]

    def avl_flush_due(self) -> list:
        self.avl_flush_armed = False
        return self._avl_flush()

    def _avl_flush(self) -> list:
        if self.avl_first_seq is None:
            return []
        envelope = {
            "type": "units.positions",
            "id": self.avl_last_id,
            "stream": AVL,
            "seq": self.avl_high,
            "first_seq": self.avl_first_seq,
            "time": self.avl_last_time,
            "payload": {"positions": list(self.avl_buffer.values())},
        }
        self.avl_buffer = {}
        self.avl_first_seq = None
        self.last_sent[AVL] = self.avl_high
        self.avl_last_flush = self.clock()
        self.metrics["avl_flushes"] += 1
        return [Send(self.encode_coalesced(envelope))]
