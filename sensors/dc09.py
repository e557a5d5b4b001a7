"""SIA DC-09 (ANSI/SIA DC-09) receiver for panic buttons, on pysiaalarm's parser, plus a minimal dialler.

Receiver: pysiaalarm parses each frame (SIA-DCS and ADM-CID, AES-CBC per account), checks the CRC, the
account and the timestamp window (`CAD_DC09_TIMEBAND`, seconds before/after now) and builds the answer.
Unlike pysiaalarm's own client, which ACKs before calling the handler, this server ACKs only after the
signal is committed to the database: if that fails, the panel gets a NAK and sends again (no loss).
Bad CRC → no answer (the standard's choice: the panel retries); unknown account, undecryptable frame or
stale timestamp → NAK; an unknown event code → DUH. Accounts and keys are reloaded from the database
every `CAD_DC09_ACCOUNTS_REFRESH_S` seconds.

Dialler (`build_frame`, `send_frame`): builds frames to the standard (used by the tests and bench/panic.py
to drive the receiver, and handy to check a deployment: `manage.py dc09_receiver --help`).
"""

import asyncio
import logging
import secrets
import string
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from Crypto.Cipher import AES
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from pysiaalarm import SIAAccount
from pysiaalarm.base_server import BaseSIAServer
from pysiaalarm.event import NAKEvent, SIAEvent
from pysiaalarm.utils import Counter, ResponseType

from cad.errors import DomainError
from sensors.models import PanicButton, PanicSignal
from sensors.panic import receive_panic_signal

logger = logging.getLogger(__name__)
_PAD_ALPHABET = string.ascii_letters + string.digits


def load_accounts() -> dict[str, SIAAccount]:
    before, after = settings.CAD["DC09_TIMEBAND"]
    return {
        account: SIAAccount(account_id=account, key=key or None, allowed_timeband=(before, after))
        for account, key in PanicButton.objects.filter(active=True).values_list("account", "aes_key")
    }


def _store(event: SIAEvent) -> None:
    close_old_connections()
    timestamp = event.timestamp if isinstance(event.timestamp, datetime) else None
    receive_panic_signal(
        account=event.account,
        code=event.code or "",
        transport=PanicSignal.Transport.DC09,
        device_time=timestamp,
    )


class Dc09Server(BaseSIAServer):
    """One asyncio TCP server; each connection may carry several frames (one per read)."""

    def __init__(self, accounts: dict[str, SIAAccount], *, workers: int = 4):
        super().__init__(accounts, Counter())
        self.workers = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dc09-db")

    def close(self) -> None:
        """Close every worker thread's database connection, then the pool (tests, shutdown)."""
        barrier = threading.Barrier(self.workers)

        def close_connection():
            barrier.wait(5)
            connections.close_all()

        for future in [self.executor.submit(close_connection) for _ in range(self.workers)]:
            future.result()
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
                    writer.write(response)
                    await writer.drain()
                if reader.at_eof():
                    break
        finally:
            writer.close()

    async def answer(self, data: bytes) -> bytes | None:
        event = self.parse_and_check_event(data)
        if event is None:
            return None
        if isinstance(event, SIAEvent) and event.valid_message and event.sia_account is None:
            return (
                NAKEvent().create_response()
            )  # unknown account: a full NAK frame, not pysiaalarm's bare "NAK"
        if isinstance(event, SIAEvent) and event.response == ResponseType.ACK:
            try:
                await asyncio.get_running_loop().run_in_executor(self.executor, _store, event)
            except (DomainError, DatabaseError) as exc:
                logger.warning(
                    "dc09 signal not stored; NAK", extra={"account": event.account, "error": str(exc)}
                )
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
            try:
                dc09.accounts = await sync_to_async(load_accounts)()
            except DatabaseError as exc:
                logger.warning("dc09 accounts not refreshed", extra={"error": str(exc)})


# --- Dialler (frames built to the standard) -------------------------------------------------
def crc16(text: str) -> str:
    """CRC-16/ARC of the frame from the first quote to before <CR>, 4 upper-case hex digits."""
    crc = 0
    for byte in text.encode("ascii"):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return f"{crc:04X}"


def timestamp(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("_%H:%M:%S,%m-%d-%Y")


def build_frame(
    account: str,
    *,
    code: str = "PA",
    zone: str = "001",
    protocol: str = "SIA-DCS",
    key: str | None = None,
    sequence: int = 1,
    at: datetime | None = None,
    receiver: str = "R0",
    line: str = "L0",
    bad_crc: bool = False,
) -> bytes:
    """A DC-09 frame: <LF>CRC 0LLL "[*]ID" seq Rr Ll #acct [data]_timestamp <CR>.

    SIA-DCS data is `#acct|Nri<zone>/<code><zone>`; ADM-CID is `#acct|<q><eee> <pp> <zzz>` where `code`
    is the 4-digit qualifier+event (1120 = panic). With `key`, everything after `[` is AES-CBC encrypted
    (zero IV, random pad before the `|`), as DC-09 prescribes."""
    body = f"|Nri{zone}/{code}{zone}]" if protocol == "SIA-DCS" else f"|{code[0]}{code[1:4]} 01 {zone}]"
    stamp = timestamp(at)
    if key:
        plain = body + stamp
        pad_len = 16 - len(plain) % 16
        padded = "".join(secrets.choice(_PAD_ALPHABET) for _ in range(pad_len)) + plain
        cipher = AES.new(key.encode("ascii"), AES.MODE_CBC, bytes(16))
        content = (
            f'"*{protocol}"{sequence:04d}{receiver}{line}#{account}['
            + cipher.encrypt(padded.encode()).hex().upper()
        )
    else:
        content = f'"{protocol}"{sequence:04d}{receiver}{line}#{account}[#{account}{body}{stamp}'
    crc = crc16(content)
    if bad_crc:
        crc = f"{(int(crc, 16) ^ 0xFFFF):04X}"
    return f"\n{crc}0{len(content):03X}{content}\r".encode("ascii")


def parse_answer(data: bytes) -> str | None:
    """ACK / NAK / DUH / RSP of a receiver's answer frame, None for no answer."""
    for kind in ("ACK", "NAK", "DUH", "RSP"):
        if f'"{kind}"'.encode() in data or f'"*{kind}"'.encode() in data:
            return kind
    return None


async def send_frame(host: str, port: int, frame: bytes, *, timeout: float = 5.0) -> str | None:
    """Dial once: connect, send one frame, read the answer (None if the receiver stays silent)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(frame)
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r"), timeout)
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
        return parse_answer(data)
    finally:
        writer.close()
