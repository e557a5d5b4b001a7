"""A minimal SIA DC-09 dialler: frames built to the standard (ANSI/SIA DC-09), sent over TCP. It drives
the receiver (sensors/dc09.py) in the tests and bench/panic.py, and checks a deployment by hand. No Django.
"""

import asyncio
import secrets
import string
from datetime import UTC, datetime

from Crypto.Cipher import AES

_PAD_ALPHABET = string.ascii_letters + string.digits


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
