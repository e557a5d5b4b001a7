"""GroupHub: each server process holds ONE channel-layer membership per group and hands every event,
JSON-encoded once, to its local consoles. With N consoles per process an event costs one Redis delivery
instead of N (the per-consumer path is what saturates a Daphne process first)."""

import asyncio
import json
import logging
import weakref

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


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
