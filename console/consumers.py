"""The console websocket transport: authenticate, join stream groups through the process hub, read the
event table, and carry out what the protocol (console.protocol.ConsoleSession) decides.

The wire protocol and its ordering rules are documented in console/protocol.py. Groups are joined before
the replay is read, so nothing is lost or duplicated across the replay/live boundary. Commands go through
REST.

A console has no channel-layer channel of its own: the process hub delivers its streams' events, its
heartbeats and the end of its session (logout, deactivation, role change). Whatever happens to the socket
(a bad frame, an exception), it leaves the hub and `connections_open` once, in `__call__`'s finally. The
session is also re-checked every CAD["SESSION_CHECK_S"] in case a session-end message was lost.
"""

import asyncio
import json
import logging
import time
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.permissions import CONSOLE_ROLES
from cad.events import SESSIONS_GROUP, events_after, last_seq, stream_group
from console import protocol
from console.hub import group_hub, raise_if_cancelled, stop
from console.metrics import METRICS

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_SESSION_ENDED = 4401
MAX_FRAME_CHARS = 64 * 1024  # client frames are small control messages


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


@database_sync_to_async
def _session_still_valid(*, user_id: int, role: str, center_id: int, session_key: str | None) -> bool:
    """The user is still active with the same role and centre and, for a session login, the session still
    exists, belongs to them and matches their password (Django's session auth hash)."""
    user = User.objects.filter(pk=user_id).first()
    if user is None or not user.is_active or user.role != role or user.center_id != center_id:
        return False
    if session_key is None:
        return True
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()  # {} if gone or expired
    stored_hash = data.get(HASH_SESSION_KEY)
    return (
        str(data.get(SESSION_KEY)) == str(user_id)
        and stored_hash is not None
        and constant_time_compare(stored_hash, user.get_session_auth_hash())
    )


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    """One dispatcher/call-taker console."""

    channel_layer_alias = None  # no channel of its own: the process hub delivers (see the module docstring)
    avl_flush_interval = 1.0  # seconds; at most one coalesced AVL message per socket per interval
    reorder_wait_s = 0.25  # how long an event ahead of a missing seq waits before the table fills the gap
    accepted = False  # until accept(): the hub's live-state notices wait for it

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._leave()

    async def dispatch(self, message):
        await super().dispatch(message)
        raise_if_cancelled()  # a cancel swallowed while handling the message still ends the consumer

    async def connect(self):
        user = self.scope.get("user")
        identity = await _console_identity(user)
        if identity is None:
            METRICS["connections_refused"] += 1
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.center_id, role = identity
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.hub = group_hub(get_channel_layer())
        self.session = protocol.ConsoleSession(
            role=role,
            replay_limit=settings.CAD["REPLAY_LIMIT"],
            metrics=METRICS,
            clock=time.monotonic,
            avl_flush_interval=self.avl_flush_interval,
            reorder_wait_s=self.reorder_wait_s,
            encode_coalesced=self.hub.encode_coalesced,
        )
        self.gap_timers: dict[str, asyncio.Task] = {}  # sleeping before a gap fill
        self.gap_fills: set[asyncio.Task] = set()  # filling a gap from the table
        self.avl_task: asyncio.Task | None = None
        self.session_check: asyncio.Task | None = None
        self.open = True
        METRICS["connections_open"] += 1
        METRICS["connections_total"] += 1
        await self.hub.join(SESSIONS_GROUP, self)
        self.session_check = asyncio.ensure_future(self._check_session_periodically())
        await self.accept()
        self.accepted = True
        if self.hub.failing:  # connected while the channel layer is down: say so from the start
            await self.live_state(False)

    async def _leave(self) -> None:
        """Once per accepted socket, however it ended: stop timers, leave the hub, count it closed."""
        if not getattr(self, "open", False):
            return
        self.open = False
        METRICS["connections_open"] -= 1
        for task in [self.avl_task, self.session_check, *self.gap_timers.values(), *self.gap_fills]:
            if task is not None and task is not asyncio.current_task():
                stop(task)
        for group in [
            SESSIONS_GROUP,
            *(stream_group(center_id=self.center_id, stream=s) for s in self.session.joined),
        ]:
            await self.hub.leave(group, self)

    async def disconnect(self, code):
        await self._leave()

    async def websocket_receive(self, message):
        """A client frame. Nothing a client sends may crash the consumer: anything unexpected is logged and
        the socket closed cleanly (the client reconnects and resumes)."""
        try:
            await super().websocket_receive(message)
        except Exception:  # noqa: BLE001 - the socket must close cleanly whatever a frame triggers
            METRICS["frames_failed"] += 1
            logger.exception("console frame failed")
            await self.close(code=1011)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            METRICS["frames_rejected"] += 1
            await self.send(
                text_data=protocol.error_frame("bad_frame", _("Solo se aceptan mensajes JSON de texto.")).text
            )
            return
        if len(text_data) > MAX_FRAME_CHARS:
            METRICS["frames_rejected"] += 1
            await self.send(text_data=protocol.error_frame("too_big", _("Mensaje demasiado grande.")).text)
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            METRICS["frames_rejected"] += 1
            await self.send(text_data=protocol.error_frame("bad_json", _("Mensaje JSON inválido.")).text)
            return
        await self.receive_json(content)

    # --- Session --------------------------------------------------------------------------------
    async def end_session(self, message: dict) -> None:
        """From the hub: a user's session ended (logout) or their account changed (deactivated, new role)."""
        if message.get("user_id") != self.user_id:
            return
        if message.get("session_key") not in (None, self.session_key):
            return
        METRICS["sessions_ended"] += 1
        await self.close(code=CLOSE_SESSION_ENDED)

    async def _check_session_periodically(self) -> None:
        while True:
            await asyncio.sleep(settings.CAD["SESSION_CHECK_S"])
            valid = await _session_still_valid(
                user_id=self.user_id,
                role=self.session.role,
                center_id=self.center_id,
                session_key=self.session_key,
            )
            if not valid:
                METRICS["sessions_ended"] += 1
                await self.close(code=CLOSE_SESSION_ENDED)
                return

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
            elif isinstance(action, protocol.VerifySeq):
                current = await _current_seq(center_id=self.center_id, stream=action.stream)
                await self._perform(self.session.verified(action.stream, current))

    # --- Live events ---------------------------------------------------------------------------
    async def deliver(self, envelope: dict, text: str) -> None:
        """A live event from the process hub (`text` is its JSON, encoded once for every console)."""
        await self._perform(self.session.live(envelope, text))

    async def live_state(self, live: bool) -> None:
        """From the hub: live delivery through the channel layer stopped (or resumed)."""
        if not self.accepted:  # still connecting: told after accept()
            return
        await self._perform(self.session.live_state(live, every_s=settings.CAD["HEARTBEAT_S"]))

    async def heartbeat(self, stream: str, current: int) -> None:
        """From the hub, every CAD["HEARTBEAT_S"]: the stream's current seq in the table."""
        await self._perform(self.session.heartbeat(stream, current))

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
                group = stream_group(center_id=self.center_id, stream=stream)
                await self.hub.join(group, self, stream=(self.center_id, stream))
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

    async def cad_events(self, message):
        for envelope in message["envelopes"]:
            await self.send_json(envelope)
