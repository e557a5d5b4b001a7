"""SIA DC-09 (ANSI/SIA DC-09) receiver for panic buttons, on pysiaalarm's parser.

Receiver: pysiaalarm parses each frame (SIA-DCS and ADM-CID, AES-CBC per account), checks the CRC, the
account and the timestamp window (`CAD_DC09_TIMEBAND`, seconds before/after now) and builds the answer.
Unlike pysiaalarm's own client, which ACKs before calling the handler, this server ACKs only after the
signal is committed to the database: if that fails, the panel gets a NAK and sends again (no loss).
Bad CRC → no answer (the standard's choice: the panel retries); unknown account, undecryptable frame or
stale timestamp → NAK; an unknown event code → DUH. Accounts and keys are reloaded from the database
every `CAD_DC09_ACCOUNTS_REFRESH_S` seconds.

The dialler that drives it in tests and bench/panic.py is sensors/dialler.py (frames built to the standard).
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections, transaction
from pysiaalarm import SIAAccount
from pysiaalarm.base_server import BaseSIAServer
from pysiaalarm.event import NAKEvent, SIAEvent
from pysiaalarm.utils import Counter, ResponseType

from cad.errors import DomainError
from cad.events import deferred_events
from sensors.models import PanicButton, PanicSignal
from sensors.panic import receive_panic_signal

logger = logging.getLogger(__name__)
RETRANSMISSION_S = 120


def load_accounts() -> dict[str, SIAAccount]:
    before, after = settings.CAD["DC09_TIMEBAND"]
    return {
        account: SIAAccount(account_id=account, key=key or None, allowed_timeband=(before, after))
        for account, key in PanicButton.objects.filter(active=True).values_list("account", "aes_key")
    }


def _store(event: SIAEvent) -> None:
    timestamp = event.timestamp if isinstance(event.timestamp, datetime) else None
    receive_panic_signal(
        account=event.account,
        code=event.code or "",
        transport=PanicSignal.Transport.DC09,
        device_time=timestamp,
    )


class _BatchAbandoned(Exception):
    pass


def store_batch(events: list[SIAEvent]) -> list[bool]:
    """Store the signals in ONE transaction (group commit); True for each one stored once it is committed.

    Each signal runs in its own savepoint (receive_panic_signal is atomic), so one that fails (unknown
    button, misconfigured type, a constraint) is rolled back alone and gets False; the others go on. Their
    events are written together at the end (one counter bump, one INSERT), and the hot per-centre rows (event
    counter, folio counter) are locked once per batch instead of once per press. If the commit itself fails,
    nothing is stored and every signal gets False: the receiver NAKs and the panels send again."""
    close_old_connections()
    outcomes = [False] * len(events)
    try:
        with transaction.atomic(), deferred_events():
            for index, event in enumerate(events):
                try:
                    _store(event)
                except (DomainError, DatabaseError) as exc:
                    logger.warning(
                        "dc09 signal not stored; NAK", extra={"account": event.account, "error": str(exc)}
                    )
                else:
                    outcomes[index] = True
            if transaction.get_connection().needs_rollback:  # a savepoint could not be rolled back
                raise _BatchAbandoned  # leaves both blocks: the events are dropped, everything rolled back
    except (DatabaseError, _BatchAbandoned) as exc:
        logger.warning("dc09 batch not committed; NAK", extra={"signals": len(events), "error": repr(exc)})
        return [False] * len(events)
    return outcomes


class Dc09Server(BaseSIAServer):
    """One asyncio TCP server; each connection may carry several frames (one per read).

    Frames are parsed on the event loop; signals to store queue up and ONE database thread stores them in
    batches of up to `batch_max` (whatever arrived while the previous batch was being committed), then each
    frame is answered. One thread, one pooled connection: presses of a centre serialize on its counter rows
    anyway, so more threads would only wait on those locks and on the GIL."""

    def __init__(self, accounts: dict[str, SIAAccount], *, batch_max: int = 100):
        super().__init__(accounts, Counter())
        self.batch_max = batch_max
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dc09-db")
        # (account, sequence, code) → the store of its first copy. A panel that got no answer in time sends
        # the same message again (same sequence): the copy waits for the first and gets the same answer
        # instead of being stored twice. Entries are dropped RETRANSMISSION_S after they complete.
        self.seen: dict[tuple, asyncio.Future] = {}
        self.queue: list[tuple[SIAEvent, asyncio.Future]] = []
        self.writer: asyncio.Task | None = None
        self.metrics = {"batches": 0, "signals": 0, "largest_batch": 0, "store_s": 0.0}

    def close(self) -> None:
        """Close the database thread's connection, then the thread (tests, shutdown)."""
        self.executor.submit(connections.close_all).result()
        self.executor.shutdown()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.shutdown_flag:
                try:
                    data = await reader.readuntil(b"\r")
                except asyncio.IncompleteReadError as exc:
                    data = exc.partial
                except (ConnectionResetError, asyncio.LimitOverrunError):
                    break
                if not data:
                    break
                response = await self.answer(data)
                if response:
                    try:
                        writer.write(response)
                        await writer.drain()
                    except ConnectionError:  # the panel hung up before its answer (it sends again)
                        break
                if reader.at_eof():
                    break
        finally:
            writer.close()

    async def _stored_once(self, event: SIAEvent) -> bool:
        """Store the signal (batched, in the database thread); a retransmission shares the first copy's
        outcome."""
        key = (event.account, event.sequence, event.code)
        first = self.seen.get(key)
        if first is not None:
            return await asyncio.shield(first)
        loop = asyncio.get_running_loop()
        outcome = self.seen[key] = loop.create_future()
        self.queue.append((event, outcome))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.ensure_future(self._write_batches())
        stored = await asyncio.shield(outcome)
        if stored:
            loop.call_later(RETRANSMISSION_S, self.seen.pop, key, None)
        else:
            self.seen.pop(
                key, None
            )  # a failed store is not remembered: the panel's next try is stored afresh
        return stored

    async def _write_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self.queue:
            batch, self.queue = self.queue[: self.batch_max], self.queue[self.batch_max :]
            began = time.monotonic()
            try:
                outcomes = await loop.run_in_executor(self.executor, store_batch, [e for e, _ in batch])
            except Exception:  # noqa: BLE001 - whatever happened, every waiting panel gets an answer (NAK)
                logger.exception("dc09 batch failed; NAK")
                outcomes = [False] * len(batch)
            self.metrics["store_s"] += time.monotonic() - began
            self.metrics["batches"] += 1
            self.metrics["signals"] += len(batch)
            self.metrics["largest_batch"] = max(self.metrics["largest_batch"], len(batch))
            for (_event, future), stored in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(stored)

    async def answer(self, data: bytes) -> bytes | None:
        event = self.parse_and_check_event(data)
        if event is None:
            return None
        if isinstance(event, SIAEvent) and event.valid_message and event.sia_account is None:
            return NAKEvent().create_response()  # unknown account: a full NAK frame, not pysiaalarm's "NAK"
        acknowledged = isinstance(event, SIAEvent) and event.response == ResponseType.ACK
        if acknowledged and not await self._stored_once(event):
            return NAKEvent().create_response()
        response = event.create_response()
        return None if response == b"\n\r" else response


async def serve(*, host: str, port: int, refresh_s: float, ready: asyncio.Event | None = None) -> None:
    dc09 = Dc09Server(await sync_to_async(load_accounts)())
    server = await asyncio.start_server(dc09.handle, host, port)
    logger.info("dc09 receiver listening", extra={"host": host, "port": port, "accounts": len(dc09.accounts)})
    if ready is not None:
        ready.set()
    async with server:
        while True:
            await asyncio.sleep(refresh_s)
            logger.info("dc09 receiver", extra=dict(dc09.metrics))
            try:
                dc09.accounts = await sync_to_async(load_accounts)()
            except DatabaseError as exc:
                logger.warning("dc09 accounts not refreshed", extra={"error": str(exc)})
