"""The console websocket transport: authenticate, join stream groups through the process hub, read the
event table, and carry out what the protocol (console.protocol.ConsoleSession) decides.

The wire protocol and its ordering rules are documented in console/protocol.py. Groups are joined before
the replay is read, so nothing is lost or duplicated across the replay/live boundary. Commands go through
REST.
"""

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from accounts.permissions import CONSOLE_ROLES
from cad.events import events_after, last_seq, stream_group
from console import protocol
from console.hub import group_hub
from console.metrics import METRICS

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403


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


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    """One dispatcher/call-taker console."""

    avl_flush_interval = 1.0  # seconds; at most one coalesced AVL message per socket per interval
    reorder_wait_s = 0.25  # how long an event ahead of a missing seq waits before the table fills the gap

    async def connect(self):
        identity = await _console_identity(self.scope.get("user"))
        if identity is None:
            METRICS["connections_refused"] += 1
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.center_id, role = identity
        self.session = protocol.ConsoleSession(
            role=role,
            replay_limit=settings.CAD["REPLAY_LIMIT"],
            metrics=METRICS,
            clock=time.monotonic,
            avl_flush_interval=self.avl_flush_interval,
            reorder_wait_s=self.reorder_wait_s,
        )
        self.hub = group_hub(self.channel_layer)
        self.gap_timers: dict[str, asyncio.Task] = {}  # sleeping before a gap fill
        self.gap_fills: set[asyncio.Task] = set()  # filling a gap from the table
        self.avl_task: asyncio.Task | None = None
        METRICS["connections_open"] += 1
        METRICS["connections_total"] += 1
        await self.accept()

    async def disconnect(self, code):
        if not hasattr(self, "session"):
            return
        METRICS["connections_open"] -= 1
        for task in [self.avl_task, *self.gap_timers.values(), *self.gap_fills]:
            if task is not None:
                task.cancel()
        for stream in self.session.joined:
            await self.hub.leave(stream_group(center_id=self.center_id, stream=stream), self)

    async def _perform(self, actions: list) -> None:
        """Carry out the protocol's actions in order."""
        for action in actions:
            if isinstance(action, protocol.Send):
                await self.send(text_data=action.text)
            elif isinstance(action, protocol.ArmGapTimer):
                self.gap_timers[action.stream] = asyncio.ensure_future(
                    self._gap_later(action.stream, action.delay)
                )
            elif isinstance(action, protocol.CancelGapTimer):
                task = self.gap_timers.pop(action.stream, None)
                if task is not None:
                    task.cancel()
            elif isinstance(action, protocol.ArmAvlFlush):
                self.avl_task = asyncio.ensure_future(self._avl_flush_later(action.delay))
            elif isinstance(action, protocol.Replay):
                await self._replay(action)
            elif isinstance(action, protocol.Subscribe):
                await self._subscribe(action)
            elif isinstance(action, protocol.Resume):
                await self._replay(protocol.Replay(action.stream, action.seq, "resume"))

    # --- Live events ---------------------------------------------------------------------------
    async def deliver(self, envelope: dict, text: str) -> None:
        """A live event from the process hub (`text` is its JSON, encoded once for every console)."""
        await self._perform(self.session.live(envelope, text))

    async def dispatch(self, message):
        """Events sent straight to this consumer's channel (not via the hub) never touch the database:
        skip Channels' per-message `aclose_old_connections()` thread hop for them. Everything else, which
        may use the ORM, takes the normal path."""
        if message.get("type") == "cad.event":
            await self.cad_event(message)
        else:
            await super().dispatch(message)

    async def cad_event(self, message):
        await self._perform(self.session.live(message["envelope"], None))

    async def _gap_later(self, stream: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self.gap_timers.pop(stream, None)
        self.gap_fills.add(asyncio.current_task())
        try:
            await self._perform(self.session.gap_due(stream))
        finally:
            self.gap_fills.discard(asyncio.current_task())

    async def _avl_flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.avl_task = None
        await self._perform(self.session.avl_flush_due())

    # --- Client messages -------------------------------------------------------------------------
    async def receive_json(self, content, **kwargs):
        await self._perform(self.session.client_message(content))

    async def _subscribe(self, request: protocol.Subscribe) -> None:
        stream = request.stream
        self.session.hold()
        try:
            if stream not in self.session.joined:
                # Join FIRST: anything committed from now on reaches us live; anything before is in the table.
                await self.hub.join(stream_group(center_id=self.center_id, stream=stream), self)
                self.session.joined.add(stream)
            if request.seq is None:
                current = await _current_seq(center_id=self.center_id, stream=stream)
                await self._perform(self.session.hello(stream, current))
            else:
                await self._read_and_send(self.session.start_at(stream, request.seq))
        finally:
            await self._perform(self.session.release())

    async def _replay(self, replay: protocol.Replay) -> None:
        self.session.hold()
        try:
            await self._read_and_send(replay)
        finally:
            await self._perform(self.session.release())

    async def _read_and_send(self, replay: protocol.Replay) -> None:
        rows, current = await _read_replay(
            center_id=self.center_id,
            stream=replay.stream,
            after_seq=replay.after_seq,
            limit=self.session.replay_limit,
        )
        await self._perform(self.session.replay_rows(replay, rows, current))


class BareForwardConsumer(AsyncJsonWebsocketConsumer):
    """Benchmark baseline only: joins the centre's console group and forwards every group message as-is,
    with no authentication, replay or deduplication. Routed only when CAD_BENCH_BASELINE=1."""

    async def connect(self):
        self.group = stream_group(
            center_id=int(self.scope["url_route"]["kwargs"]["center_id"]), stream=protocol.CONSOLE
        )
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def cad_event(self, message):
        await self.send_json(message["envelope"])
