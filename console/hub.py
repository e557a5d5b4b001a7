"""GroupHub: each server process holds ONE channel-layer membership per group and hands every event,
JSON-encoded once, to its local consoles. With N consoles per process an event costs one Redis delivery
instead of N (the per-consumer path is what saturates a Daphne process first).

Self-repair: a restarted Redis forgets every membership and never sends anything to say so, and a quiet
group outlives `group_expiry`. So the hub re-joins every group on a timer (`CAD["HEARTBEAT_S"]`) and right
after any receive error, and on the same timer reads each stream's current seq from the database and hands
it to its consoles (the heartbeat): a console that missed a broadcast is repaired from the event table even
when no later event arrives.

Coalesced AVL messages are built per console (each has its own flush timer and catch-up state), but the
consoles of a process that buffered the same live events build the same message: its JSON is encoded once
and shared (`encode_coalesced`).
"""

import asyncio
import json
import logging
import weakref
from collections import OrderedDict

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from django.conf import settings
from redis.exceptions import RedisError

from cad.models import EventStream
from console.metrics import METRICS

logger = logging.getLogger(__name__)

# Logout, deactivation and role changes reach every process's consoles through this group.
SESSIONS_GROUP = "cad.sessions"
LAYER_ERRORS = (OSError, TimeoutError, RedisError, ChannelFull)
COALESCED_TEXTS = 16  # recent coalesced AVL encodings kept (the consoles of a process flush within ms)
RECANCEL_S = 0.5


def raise_if_cancelled() -> None:
    """Re-raise a cancel that something swallowed. Python 3.11's asyncio.wait_for returns its result when
    its future completes as the cancel lands, and redis-py sends every command through it (the channel
    layer's socket_timeout): a task cancelled at that moment carries on as if it never was."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_stopping: set[asyncio.Task] = set()


def stop(task: asyncio.Task) -> None:
    """Cancel `task` and cancel it again every RECANCEL_S until it ends: one swallowed cancel (see
    `raise_if_cancelled`) must not leave a pump polling Redis for a group nobody listens to, forever."""

    async def cancel_until_done():
        while not task.done():
            await asyncio.wait([task], timeout=RECANCEL_S)
            if not task.done():
                task.cancel()

    task.cancel()
    watcher = asyncio.ensure_future(cancel_until_done())
    _stopping.add(watcher)
    watcher.add_done_callback(_stopping.discard)


@database_sync_to_async
def _current_seqs(keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    centers = {center for center, _ in keys}
    rows = EventStream.objects.filter(center_id__in=centers).values_list("center_id", "name", "last_seq")
    current = {(center, name): seq for center, name, seq in rows}
    return {key: current.get(key, 0) for key in keys}


class GroupHub:
    """One channel-layer membership per group for this process and event loop, fanned out to local
    consoles in arrival order. A console that fails to take an event never stops the others."""

    def __init__(self, layer):
        self.layer = layer
        self.members: dict[str, set] = {}
        self.channels: dict[str, str] = {}
        self.streams: dict[str, tuple[int, str]] = {}  # group -> (center_id, stream) for heartbeats
        self.pumps: dict[str, asyncio.Task] = {}
        self.lock = asyncio.Lock()
        self.ticker: asyncio.Task | None = None
        self.coalesced_texts: OrderedDict[tuple, tuple[str, list]] = OrderedDict()
        self.failing: set[str] = set()  # groups whose layer receive failed and that have not re-joined yet

    async def join(self, group: str, consumer, *, stream: tuple[int, str] | None = None) -> None:
        """Returns once the process is a member of `group`: every event sent from now on reaches `consumer`."""
        async with self.lock:
            if group not in self.members:
                channel = await self.layer.new_channel()
                await self.layer.group_add(group, channel)
                self.members[group] = set()
                self.channels[group] = channel
                self.pumps[group] = asyncio.ensure_future(self._pump(group, channel))
                if stream is not None:
                    self.streams[group] = stream
            self.members[group].add(consumer)
            if self.ticker is None or self.ticker.done():
                self.ticker = asyncio.ensure_future(self._tick())

    async def leave(self, group: str, consumer) -> None:
        async with self.lock:
            members = self.members.get(group)
            if members is None:
                return
            members.discard(consumer)
            if members:
                return
            del self.members[group]
            self.streams.pop(group, None)
            stop(self.pumps.pop(group))
            await self._set_failing(group, False)  # its pump is gone, failing or not
            channel = self.channels.pop(group)
            try:
                await self.layer.group_discard(group, channel)
            except LAYER_ERRORS as exc:  # the membership expires by itself
                logger.warning("group hub discard failed", extra={"group": group, "error": repr(exc)})
            if not self.members and self.ticker is not None:
                stop(self.ticker)
                self.ticker = None

    async def rejoin(self, group: str) -> bool:
        channel = self.channels.get(group)
        if channel is None:
            return True
        try:
            await self.layer.group_add(group, channel)
        except LAYER_ERRORS as exc:
            logger.warning("group hub re-join failed", extra={"group": group, "error": repr(exc)})
            return False
        return True

    async def _pump(self, group: str, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except LAYER_ERRORS as exc:
                # Layer down (e.g. Redis restarting): join again as soon as it answers, since a restarted Redis
                # forgot the membership. Consoles fill what was missed by seq (replay, heartbeat).
                METRICS["hub_receive_errors"] += 1
                logger.warning("group hub receive failed", extra={"group": group, "error": repr(exc)})
                await self._set_failing(group, True)
                await asyncio.sleep(0.5)
                while not await self.rejoin(group):
                    await asyncio.sleep(1.0)
                METRICS["hub_rejoins"] += 1
                await self._set_failing(group, False)
                continue
            await self._deliver(group, message)

    async def _set_failing(self, group: str, failing: bool) -> None:
        """Tell every local console when live delivery stops (a group's receive failed) and when it resumes
        (every failed group re-joined): a console never goes quietly stale."""
        was_live = not self.failing
        (self.failing.add if failing else self.failing.discard)(group)
        if was_live == (not self.failing):
            return
        if self.failing:
            logger.warning("live delivery interrupted", extra={"groups": sorted(self.failing)})
        else:
            logger.info("live delivery restored")
        consumers = {consumer for members in self.members.values() for consumer in members}
        for consumer in consumers:
            try:
                await consumer.live_state(not self.failing)
            except Exception:  # noqa: BLE001 - one broken socket must not starve the others
                logger.exception("console live-state notice failed")

    async def _deliver(self, group: str, message: dict) -> None:
        kind = message.get("type")
        if kind == "cad.event" and isinstance(message.get("envelope"), dict):
            await self._deliver_envelope(group, message["envelope"])
        elif kind == "cad.events" and isinstance(message.get("envelopes"), list):
            # Several events of the group coalesced by the sender (cad.events.coalesce), in seq order.
            for envelope in message["envelopes"]:
                if isinstance(envelope, dict):
                    await self._deliver_envelope(group, envelope)
        elif kind == "session.end":
            for consumer in list(self.members.get(group, ())):
                await consumer.end_session(message)

    async def _deliver_envelope(self, group: str, envelope: dict) -> None:
        text = json.dumps(envelope)  # encoded once for every local console
        for consumer in list(self.members.get(group, ())):
            try:
                await consumer.deliver(envelope, text)
            except Exception:  # noqa: BLE001 - one broken socket must not starve the others
                logger.exception("console delivery failed", extra={"group": group})

    def encode_coalesced(self, envelope: dict) -> str:
        """The JSON of a coalesced AVL envelope, encoded once for every console of this process that flushes
        the same one. The key is its seqs, time and id and the identity of its position entries: the hub
        hands every console the same decoded objects, so consoles that buffered the same live events hold
        the same entries, while positions read from the table are other objects and get their own encoding.
        A cached entry keeps its positions referenced, so their ids cannot be reused meanwhile."""
        positions = envelope["payload"]["positions"]
        key = (envelope["seq"], envelope["first_seq"], envelope["time"], envelope["id"], *map(id, positions))
        cached = self.coalesced_texts.get(key)
        if cached is None:
            cached = self.coalesced_texts[key] = (json.dumps(envelope), positions)
            if len(self.coalesced_texts) > COALESCED_TEXTS:
                self.coalesced_texts.popitem(last=False)
        return cached[0]

    async def _tick(self) -> None:
        """Every heartbeat interval: re-join every group, then send each console its streams' current seq."""
        while True:
            await asyncio.sleep(settings.CAD["HEARTBEAT_S"])
            for group in list(self.members):
                await self.rejoin(group)
            streams = dict(self.streams)
            if not streams:
                continue
            try:
                current = await _current_seqs(sorted(set(streams.values())))
            except Exception:  # noqa: BLE001 - a database hiccup skips one heartbeat, never the ticker
                logger.exception("heartbeat read failed")
                continue
            METRICS["heartbeats"] += 1
            for group, key in streams.items():
                for consumer in list(self.members.get(group, ())):
                    try:
                        await consumer.heartbeat(key[1], current[key])
                    except Exception:  # noqa: BLE001 - one broken socket must not starve the others
                        logger.exception("console heartbeat failed", extra={"group": group})


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def group_hub(layer) -> GroupHub:
    """The hub of this event loop for `layer` (tests switch layers and loops; servers have one of each)."""
    per_loop = _hubs.setdefault(asyncio.get_running_loop(), {})
    hub = per_loop.get(id(layer))
    if hub is None or hub.layer is not layer:
        hub = per_loop[id(layer)] = GroupHub(layer)
    return hub
