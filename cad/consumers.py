"""The console websocket: authenticate, join stream groups, replay from the event table, forward live.

Protocol (JSON text frames):

client → server
  {"type": "subscribe", "streams": {"console": <last seq | null>, "avl": <last seq | null>}}
  {"type": "resume", "stream": "console", "seq": <last seq applied>}
server → client
  event envelopes {type, id, stream, seq, time, payload} (AVL: coalesced, with `first_seq`)
  {"type": "hello", "stream": s, "seq": n}         (subscribed with null: load the snapshot by REST)
  {"type": "resync", "stream": s, "seq": n}        (too far behind: reload the snapshot, continue after n)
  {"type": "notice", "level": "warning"|"info", "code": ..., "message": ...}
  {"type": "error", "code": ..., "message": ...}

Groups are joined before the replay is read, and live events with seq <= the last one sent on a stream are
dropped, so nothing is lost or duplicated across the replay/live boundary. Live events arriving while a
replay is being read wait in a per-socket buffer, so a socket's stream is always in seq order.

Fan-out: each server process holds ONE channel-layer membership per group (GroupHub) and hands every event,
JSON-encoded once, to its local consoles. With N consoles per process an event costs one Redis delivery
instead of N (the per-consumer path is what saturates a Daphne process first). Commands go through REST.
"""

import asyncio
import json
import logging
import time
import weakref

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from accounts.permissions import CONSOLE_ROLES
from cad.events import events_after, last_seq, stream_group
from cad.models import EventStream

logger = logging.getLogger(__name__)

CONSOLE = EventStream.Name.CONSOLE.value
AVL = EventStream.Name.AVL.value
# Which roles may read each stream (all console roles read both today).
STREAM_ROLES = {CONSOLE: CONSOLE_ROLES, AVL: CONSOLE_ROLES}
CLOSE_FORBIDDEN = 4403

# Process-wide counters, exposed at GET /api/v1/realtime/metrics (per Daphne process).
METRICS = {
    "connections_open": 0,
    "connections_total": 0,
    "connections_refused": 0,
    "replays": 0,
    "replayed_events": 0,
    "resumes": 0,
    "resyncs": 0,
    "duplicates_dropped": 0,
    "gaps_filled": 0,
    "avl_flushes": 0,
}


def metrics_snapshot() -> dict:
    return dict(METRICS)


@database_sync_to_async
def _console_identity(user) -> tuple[int, str] | None:
    """(center_id, role) for a human console user with a centre; None for anyone else."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.role not in CONSOLE_ROLES or not user.center_id:
        return None
    return user.center_id, user.role


@database_sync_to_async
def _read_replay(*, center_id: int, stream: str, after_seq: int, limit: int) -> tuple[list[dict], int]:
    """Up to limit+1 envelopes after `after_seq` (one more than allowed tells "too far behind"), and the
    stream's current last seq."""
    rows = events_after(center_id=center_id, stream=stream, after_seq=after_seq, limit=limit + 1)
    return rows, last_seq(center_id=center_id, stream=stream)


@database_sync_to_async
def _current_seq(*, center_id: int, stream: str) -> int:
    return last_seq(center_id=center_id, stream=stream)


class GroupHub:
    """One channel-layer membership per group for this process and event loop, fanned out to local
    consoles in arrival order. A console that fails to take an event never stops the others."""

    refresh_s = 3600.0  # re-add the membership well before the layer's group_expiry

    def __init__(self, layer):
        self.layer = layer
        self.members: dict[str, set] = {}
        self.channels: dict[str, str] = {}
        self.pumps: dict[str, asyncio.Task] = {}
        self.lock = asyncio.Lock()

    async def join(self, group: str, consumer) -> None:
        """Returns once the process is a member of `group`: every event sent from now on reaches `consumer`."""
        async with self.lock:
            if group not in self.members:
                channel = await self.layer.new_channel()
                await self.layer.group_add(group, channel)
                self.members[group] = set()
                self.channels[group] = channel
                self.pumps[group] = asyncio.ensure_future(self._pump(group, channel))
            self.members[group].add(consumer)

    async def leave(self, group: str, consumer) -> None:
        async with self.lock:
            members = self.members.get(group)
            if members is None:
                return
            members.discard(consumer)
            if not members:
                del self.members[group]
                self.pumps.pop(group).cancel()
                await self.layer.group_discard(group, self.channels.pop(group))

    async def _pump(self, group: str, channel: str) -> None:
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + self.refresh_s
        while True:
            try:
                message = await self.layer.receive(channel)
                if loop.time() > refresh_at:
                    await self.layer.group_add(group, channel)
                    refresh_at = loop.time() + self.refresh_s
            except (OSError, TimeoutError, RedisError) as exc:
                # Layer down (e.g. Redis restarting): keep trying, and join again once it answers, since a
                # restarted Redis forgot the membership. Consoles fill what was missed by seq.
                logger.warning("group hub receive failed", extra={"group": group, "error": str(exc)})
                await asyncio.sleep(1.0)
                refresh_at = loop.time()
                continue
            envelope = message.get("envelope") if message.get("type") == "cad.event" else None
            if envelope is None:
                continue
            text = json.dumps(envelope)  # encoded once for every local console
            for consumer in list(self.members.get(group, ())):
                try:
                    await consumer.deliver(envelope, text)
                except Exception:  # noqa: BLE001 - one broken socket must not starve the others
                    logger.exception("console delivery failed", extra={"group": group})


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def group_hub(layer) -> GroupHub:
    """The hub of this event loop for `layer` (tests switch layers and loops; servers have one of each)."""
    per_loop = _hubs.setdefault(asyncio.get_running_loop(), {})
    hub = per_loop.get(id(layer))
    if hub is None or hub.layer is not layer:
        hub = per_loop[id(layer)] = GroupHub(layer)
    return hub


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    """One dispatcher/call-taker console. See the module docstring for the protocol."""

    avl_flush_interval = 1.0  # seconds; at most one coalesced AVL message per socket per interval
    reorder_wait_s = 0.25  # how long an event ahead of a missing seq waits before the table fills the gap

    async def connect(self):
        identity = await _console_identity(self.scope.get("user"))
        if identity is None:
            METRICS["connections_refused"] += 1
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.center_id, self.role = identity
        self.joined: set[str] = set()
        self.last_sent: dict[str, int] = {}
        self.pending: list | None = None  # live events held back while a replay/hello is being prepared
        self.held: dict[str, dict[int, tuple]] = {}  # stream -> seq -> live event ahead of a missing seq
        self.gap_timers: dict[str, asyncio.Task] = {}  # sleeping before a gap fill
        self.gap_fills: set[asyncio.Task] = set()  # filling a gap from the table
        self.hub = group_hub(self.channel_layer)
        # AVL coalescing state: newest position per unit since the last flush.
        self.avl_buffer: dict[int, list] = {}
        self.avl_first_seq: int | None = None
        self.avl_high = 0
        self.avl_last_time = None
        self.avl_last_id = None
        self.avl_last_flush = float("-inf")
        self.avl_task: asyncio.Task | None = None
        METRICS["connections_open"] += 1
        METRICS["connections_total"] += 1
        await self.accept()

    async def disconnect(self, code):
        if not hasattr(self, "joined"):
            return
        METRICS["connections_open"] -= 1
        for task in [self.avl_task, *self.gap_timers.values(), *self.gap_fills]:
            if task is not None:
                task.cancel()
        for stream in self.joined:
            await self.hub.leave(stream_group(center_id=self.center_id, stream=stream), self)

    # --- Live events ---------------------------------------------------------------------------
    async def deliver(self, envelope: dict, text: str) -> None:
        """A live event from the process hub (`text` is its JSON, encoded once for every console)."""
        if self.pending is not None:
            self.pending.append((envelope, text))
            return
        await self._forward(envelope, text)

    async def _forward(self, envelope: dict, text: str | None) -> None:
        stream = envelope.get("stream")
        if stream not in self.last_sent:  # not subscribed to this stream
            return
        if stream == AVL:
            await self._avl_add([envelope])
            return
        seq = envelope["seq"]
        if seq <= self.last_sent[stream]:
            METRICS["duplicates_dropped"] += 1
            return
        if seq > self.last_sent[stream] + 1:
            # Ahead of a missing seq: with several server processes, broadcasts may arrive out of order.
            # Hold it briefly; the missing one usually follows, else the gap is filled from the table.
            self.held.setdefault(stream, {})[seq] = (envelope, text)
            if stream not in self.gap_timers:
                self.gap_timers[stream] = asyncio.ensure_future(self._fill_gap_later(stream))
            return
        await self._send_live(stream, envelope, text)
        held = self.held.get(stream)
        while held and (self.last_sent[stream] + 1) in held:
            await self._send_live(stream, *held.pop(self.last_sent[stream] + 1))
        if held:
            for stale in [s for s in held if s <= self.last_sent[stream]]:
                del held[stale]
        if not held and stream in self.gap_timers:
            self.gap_timers.pop(stream).cancel()

    async def _send_live(self, stream: str, envelope: dict, text: str | None) -> None:
        self.last_sent[stream] = envelope["seq"]
        await self.send(text_data=text if text is not None else json.dumps(envelope))

    async def _fill_gap_later(self, stream: str) -> None:
        await asyncio.sleep(self.reorder_wait_s)
        self.gap_timers.pop(stream, None)
        self.gap_fills.add(asyncio.current_task())
        try:
            await self._fill_gap(stream)
        finally:
            self.gap_fills.discard(asyncio.current_task())

    async def _fill_gap(self, stream: str) -> None:
        last = self.last_sent[stream]
        self.held[stream] = {seq: event for seq, event in self.held.get(stream, {}).items() if seq > last}
        if not self.held[stream]:
            return
        if self.pending is not None:  # a replay is under way; look again after it
            self.gap_timers[stream] = asyncio.ensure_future(self._fill_gap_later(stream))
            return
        self.held[stream] = {}
        METRICS["gaps_filled"] += 1
        self.pending = []
        try:
            await self._replay(stream, self.last_sent[stream], reason="gap")
        finally:
            await self._drain_pending()

    async def _drain_pending(self) -> None:
        """Forward what arrived live while a replay was prepared, then go back to direct delivery."""
        while self.pending:
            envelope, text = self.pending.pop(0)
            await self._forward(envelope, text)
        self.pending = None

    async def dispatch(self, message):
        """Events sent straight to this consumer's channel (not via the hub) never touch the database:
        skip Channels' per-message `aclose_old_connections()` thread hop for them. Everything else, which
        may use the ORM, takes the normal path."""
        if message.get("type") == "cad.event":
            await self.cad_event(message)
        else:
            await super().dispatch(message)

    async def cad_event(self, message):
        await self.deliver(message["envelope"], None)

    # --- Client messages -------------------------------------------------------------------------
    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "subscribe" and isinstance(content.get("streams"), dict):
            for stream, seq in content["streams"].items():
                await self._subscribe(stream, seq)
        elif kind == "resume":
            await self._resume(content.get("stream"), content.get("seq"))
        elif kind == "ping":
            await self.send_json({"type": "pong", "t": content.get("t")})
        else:
            await self.send_json(
                {"type": "error", "code": "bad_message", "message": _("Mensaje no reconocido.")}
            )

    def _valid_seq(self, seq) -> bool:
        return seq is None or (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0)

    async def _subscribe(self, stream, seq) -> None:
        if stream not in STREAM_ROLES or self.role not in STREAM_ROLES[stream] or not self._valid_seq(seq):
            await self.send_json(
                {
                    "type": "error",
                    "code": "stream_forbidden",
                    "stream": str(stream),
                    "message": _("No puede suscribirse a este flujo."),
                }
            )
            return
        self.pending = [] if self.pending is None else self.pending
        try:
            if stream not in self.joined:
                # Join FIRST: anything committed from now on reaches us live; anything before is in the table.
                await self.hub.join(stream_group(center_id=self.center_id, stream=stream), self)
                self.joined.add(stream)
            if seq is None:
                current = await _current_seq(center_id=self.center_id, stream=stream)
                self.last_sent[stream] = current
                if stream == AVL:
                    self._avl_reset(current)
                await self.send_json({"type": "hello", "stream": stream, "seq": current})
            else:
                self.last_sent[stream] = seq
                if stream == AVL:
                    self._avl_reset(seq)
                await self._replay(stream, seq, reason="subscribe")
        finally:
            await self._drain_pending()

    async def _resume(self, stream, seq) -> None:
        if stream not in self.last_sent or seq is None or not self._valid_seq(seq):
            await self.send_json(
                {"type": "error", "code": "bad_resume", "message": _("Reanudación inválida.")}
            )
            return
        METRICS["resumes"] += 1
        self.pending = [] if self.pending is None else self.pending
        try:
            await self._replay(stream, seq, reason="resume")
        finally:
            await self._drain_pending()

    async def _replay(self, stream: str, after_seq: int, *, reason: str) -> None:
        """Send what the table holds after `after_seq` (or a resync beyond the limit). Callers hold live
        events in `self.pending` meanwhile, so the socket sees the stream in seq order."""
        limit = settings.CAD["REPLAY_LIMIT"]
        rows, current = await _read_replay(
            center_id=self.center_id, stream=stream, after_seq=after_seq, limit=limit
        )
        if len(rows) > limit:
            METRICS["resyncs"] += 1
            self.last_sent[stream] = max(self.last_sent[stream], current)
            if stream == AVL:
                self._avl_reset(self.last_sent[stream])
            await self.send_json({"type": "resync", "stream": stream, "seq": current})
            await self._notice(
                "warning",
                "resync",
                _("La consola se atrasó demasiado; se recargó el estado completo."),
                stream=stream,
            )
            return
        if not rows:
            return
        METRICS["replays"] += 1
        METRICS["replayed_events"] += len(rows)
        if stream == AVL:
            # Replay restarts the AVL stream from the client's seq: forget what was sent after it.
            self._avl_reset(after_seq, keep_buffer=False)
            await self._avl_add(rows, flush_now=True)
        else:
            for envelope in rows:
                if envelope["seq"] > self.last_sent[stream]:  # another replay may have sent it already
                    self.last_sent[stream] = envelope["seq"]
                    await self.send_json(envelope)
        if reason == "gap":
            return  # filled silently: the console never saw the hole
        if reason == "resume":
            await self._notice(
                "warning",
                "replayed",
                _("Se recuperaron %(n)d eventos perdidos.") % {"n": len(rows)},
                stream=stream,
            )
        else:
            await self._notice(
                "info",
                "replayed",
                _("Reconectado: %(n)d eventos recuperados.") % {"n": len(rows)},
                stream=stream,
            )

    async def _notice(self, level: str, code: str, message: str, **extra) -> None:
        await self.send_json({"type": "notice", "level": level, "code": code, "message": message, **extra})

    # --- AVL coalescing --------------------------------------------------------------------------
    def _avl_reset(self, seq: int, *, keep_buffer: bool = False) -> None:
        if not keep_buffer:
            self.avl_buffer = {}
            self.avl_first_seq = None
        self.avl_high = seq
        self.last_sent[AVL] = seq

    async def _avl_add(self, envelopes: list[dict], *, flush_now: bool = False) -> None:
        for envelope in envelopes:
            if envelope["seq"] <= self.avl_high:
                METRICS["duplicates_dropped"] += 1
                continue
            if self.avl_first_seq is None:
                self.avl_first_seq = envelope["seq"]
            for position in envelope.get("payload", {}).get("positions", ()):
                self.avl_buffer[position[0]] = position
            self.avl_high = envelope["seq"]
            self.avl_last_time = envelope.get("time")
            self.avl_last_id = envelope.get("id")
        if self.avl_first_seq is None:
            return
        if flush_now:
            await self._avl_flush()
            return
        if self.avl_task is not None:
            return  # a flush is already scheduled; it will carry these positions
        delay = self.avl_last_flush + self.avl_flush_interval - time.monotonic()
        if delay <= 0:
            await self._avl_flush()
        else:
            self.avl_task = asyncio.ensure_future(self._avl_flush_later(delay))

    async def _avl_flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.avl_task = None
        await self._avl_flush()

    async def _avl_flush(self) -> None:
        if self.avl_first_seq is None:
            return
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
        self.avl_last_flush = time.monotonic()
        METRICS["avl_flushes"] += 1
        await self.send_json(envelope)


class BareForwardConsumer(AsyncJsonWebsocketConsumer):
    """Benchmark baseline only: joins the centre's console group and forwards every group message as-is,
    with no authentication, replay or deduplication. Routed only when CAD_BENCH_BASELINE=1."""

    async def connect(self):
        self.group = stream_group(
            center_id=int(self.scope["url_route"]["kwargs"]["center_id"]), stream=CONSOLE
        )
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def cad_event(self, message):
        await self.send_json(message["envelope"])
