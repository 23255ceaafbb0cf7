"""Input backend `d0`: IEC 62056-21 ("D0"), the ASCII protocol of older
meters' optical interfaces.

Two ways a meter talks:

- `mode` "push": the meter sends a data message by itself every few
  seconds (many German eHZ do, often at 9600 7E1: set baud and framing).
- `mode` "A", "B" or "C" (C, the default, is what most meters with a
  sign-on want): every `request_s` the input sends the sign-on request
  ``/?!`` (with `address` between ``?`` and ``!`` where the meter needs
  one) at 300 baud 7E1; the meter answers with its identification, whose
  fifth character names the speed it offers. In mode C the input
  acknowledges (ACK 0 Z 0) and both switch to that speed; in mode B both
  switch without an acknowledgement; in mode A all stays at 300 baud. The
  meter then sends its data block: STX, the data lines, ``!``, CR LF, ETX
  and a block check character (BCC: the XOR of every byte after STX up to
  and including ETX), which is checked.

The data lines are OBIS lines (inputs/obis.py): 1.8.0 (or the tariffs
1.8.1 + 1.8.2) import, 2.8.0 export, 16.7.0 or 1.7.0 less 2.7.0 power. A
block that fails its BCC, is cut short or is not a block is counted and
dropped.
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional

from core.options import Option
from inputs import obis
from inputs.serialport import Parser, SerialInput, serial_options

STX, ETX, ACK = 0x02, 0x03, 0x06
MAX_BLOCK = 16384
# The speed a meter offers, by the fifth character of its identification
# (mode C and its acknowledgement: 0-6; mode B: A-I).
BAUD_C = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
BAUD_B = {"A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200}
IDENT_WAIT_S = 3.0  # for the identification after a request
BLOCK_WAIT_S = 60.0  # for a whole data block (slow at 300 baud)


def bcc(data: bytes) -> int:
    out = 0
    for byte in data:
        out ^= byte
    return out


def _message_start(buf: bytes, at: int = 0) -> int:
    """Where the next message ('/' at the start of a line) begins, or -1."""
    while True:
        at = buf.find(b"/", at)
        if at <= 0 or buf[at - 1 : at] in (b"\n", b"\x03", b"\x02"):
            return at
        at += 1


def _check_address(value: str) -> Optional[str]:
    return "expected the meter's address, without '!'" if "!" in value else None


class D0Parser(Parser):
    def __init__(self) -> None:
        self.buffer = b""
        self.ident = ""  # the meter's identification, from its last message

    def feed(self, data: bytes) -> List[tuple]:
        buf = self.buffer + data
        out: List[tuple] = []
        while True:
            start = _message_start(buf)
            if start < 0:
                buf = b""
                break
            buf = buf[start:]
            end = buf.find(b"!")
            if end < 0:
                if len(buf) > MAX_BLOCK:
                    out.append((None, [], "no end of data block ('!') in 16 KiB"))
                    buf = b""
                break
            again = _message_start(buf, 1)
            if 0 < again < end:
                out.append((None, [], "a data block cut short by the next"))
                buf = buf[again:]
                continue
            stx = buf.find(bytes([STX]), 0, end)
            if stx < 0:
                newline = buf.find(b"\n", end)
                if newline < 0:
                    break
                out.append(self.block(buf[:end], None))
                buf = buf[newline + 1 :]
                continue
            etx = buf.find(bytes([ETX]), end)
            if etx < 0 or len(buf) < etx + 2:
                break  # ETX and BCC on their way
            checked = buf[stx + 1 : etx + 1]
            if bcc(checked) != buf[etx + 1]:
                out.append((None, [], "BCC error"))
            else:
                out.append(self.block(buf[:stx] + buf[stx + 1 : end], None))
            buf = buf[etx + 2 :]
        self.buffer = buf
        return out

    def block(self, body: bytes, _unused) -> tuple:
        text = body.decode("ascii", "replace")
        raw = [t.strip() for t in text.splitlines()]
        if raw and raw[0].startswith("/"):
            self.ident = raw[0]
        lines = [x for x in (obis.parse_line(t) for t in raw[1:]) if x is not None]
        if not lines:
            return None, [], "no data lines in the block"
        values = [self.ident] + [obis.show(x) for x in lines]
        return obis.electricity(lines), values, None


class D0Input(SerialInput):
    OPTIONS = {
        **serial_options(300, "7E1"),
        "mode": Option("str", "C", choices=("push", "A", "B", "C")),
        "address": Option("str", "", check=_check_address),
        "request_s": Option("number", 10.0, minimum=1.0, maximum=86400.0),
    }
    PROTOCOL = "D0"

    def parser(self) -> Parser:
        return D0Parser()

    def describe(self) -> str:
        return super().describe() + f", mode {self.options['mode']}"

    def session(self, port, handle: Callable[[bytes, int, float], None]) -> None:
        if self.options["mode"] == "push":
            super().session(port, handle)
            return
        while not self._stopping.is_set():
            began = time.monotonic()
            self.readout(port, handle)
            rest = self.options["request_s"] - (time.monotonic() - began)
            if self._stopping.wait(max(rest, 0.0)):
                return

    def readout(self, port, handle: Callable[[bytes, int, float], None]) -> None:
        """One sign-on and data readout (modes A, B, C)."""
        o = self.options
        if port.baudrate != o["baud"]:  # back from the last readout's speed
            port.baudrate = o["baud"]
        port.reset_input_buffer()
        port.write(f"/?{o['address']}!\r\n".encode("ascii"))
        port.flush()
        ident = self._line(port, IDENT_WAIT_S)
        if ident is None or not ident.startswith(b"/") or len(ident) < 6:
            if ident:
                handle(ident, time.monotonic_ns(), time.time())  # a bad frame
            return
        offered = chr(ident[4])
        speed: Optional[int] = None
        if o["mode"] == "C" and offered in BAUD_C:
            port.write(bytes([ACK]) + f"0{offered}0\r\n".encode("ascii"))
            port.flush()
            speed = BAUD_C[offered]
        elif o["mode"] == "B":
            speed = BAUD_B.get(offered)
        handle(ident, time.monotonic_ns(), time.time())
        if speed and speed != port.baudrate:
            time.sleep(0.3)  # the meter switches after the acknowledgement
            port.baudrate = speed
        deadline = time.monotonic() + BLOCK_WAIT_S
        parser = self.current
        while time.monotonic() < deadline and not self._stopping.is_set():
            data = port.read(512)
            if data:
                handle(data, time.monotonic_ns(), time.time())
                if parser is not None and not parser.buffer:  # type: ignore[attr-defined]
                    return  # the block is complete (or was dropped)

    def _line(self, port, wait_s: float) -> Optional[bytes]:
        """One line (to LF) within wait_s, or what came (None: nothing)."""
        deadline = time.monotonic() + wait_s
        got = b""
        while time.monotonic() < deadline and not self._stopping.is_set():
            got += port.read(1)
            if got.endswith(b"\n"):
                return got
        return got or None
