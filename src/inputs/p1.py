"""Input backend `p1`: the DSMR P1 port of Dutch, Belgian and Luxembourgish
smart meters, which pushes a telegram every second (DSMR 5), ten seconds
(DSMR 4) or so, at 115200 8N1 (DSMR 4 and 5) or 9600 7E1 (DSMR 2.2 and 3:
set baud and framing).

A telegram runs from ``/`` to ``!``; DSMR 4 and 5 end it with a CRC16
(polynomial 0xA001, reflected, over ``/`` to ``!``) in four hex digits,
which is checked; a telegram that fails it, is cut short by the next one
or is not a telegram at all is counted and dropped. The lines are OBIS
data lines (inputs/obis.py): import 1.8.1 + 1.8.2 (tariffs), export 2.8.1 +
2.8.2, power 1.7.0 less 2.7.0. Parsed here rather than with dsmr-parser,
whose import took 126 ms and 21 MiB here (it brings a DLMS stack and
cryptography), more than the whole daemon's budget on a Pi.

Gas and water come from the M-Bus channels (0-n:24.2.1, Belgian 24.2.3,
DSMR 2.2's 24.3.0 with its value on the next line), with the time the
sub-meter captured them: with `gas_meter` (or `water_meter`) set, each new
value becomes a reading of a meter of that name, of kind gas (water), and
its flow is the volume between two captures over their time apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Dict, List, Optional, Tuple

from core.options import Option
from core.regmeter import RegisterFrame
from inputs import obis
from inputs.serialport import Parser, SerialInput, serial_options

MAX_TELEGRAM = 8192  # a DSMR 5 telegram is under 2 KiB
MBUS_GAS = 3
MBUS_WATER = 7
KINDS = {MBUS_GAS: "gas", MBUS_WATER: "water"}


def crc16(data: bytes) -> int:
    """CRC16/ARC, as DSMR 4 and 5 put after the '!'."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class SubReading:
    """A sub-meter's value and when it captured it."""

    __slots__ = ("kind", "capture", "seconds", "m3", "resolution")

    def __init__(self, kind, capture, seconds, m3, resolution) -> None:
        self.kind = kind
        self.capture = capture
        self.seconds = seconds
        self.m3 = m3
        self.resolution = resolution


def capture_seconds(text: str) -> Optional[float]:
    """YYMMDDhhmmss[SW] as seconds on a local clock (for differences)."""
    digits = text[:12]
    try:
        t = dt.datetime.strptime(digits, "%y%m%d%H%M%S")
    except ValueError:
        return None
    shift = 3600 if text[12:13] == "S" else 0  # summer time: an hour ahead
    return (t - dt.datetime(2000, 1, 1)).total_seconds() - shift


class P1Parser(Parser):
    def __init__(self, crc: Optional[bool]) -> None:
        self.crc = crc  # None: checked where the telegram has one
        self.buffer = b""
        self.subs: Dict[str, SubReading] = {}  # by kind, from the last telegram

    def feed(self, data: bytes) -> List[tuple]:
        buf = self.buffer + data
        out: List[tuple] = []
        while True:
            start = buf.find(b"/")
            if start < 0:
                buf = b""  # between telegrams (or the tail of one cut by the open)
                break
            buf = buf[start:]
            end = buf.find(b"!")
            if end < 0:
                if len(buf) > MAX_TELEGRAM:
                    out.append((None, [], "no end of telegram ('!') in 8 KiB"))
                    buf = b""
                break
            again = buf.find(b"/", 1, end)
            if again > 0:
                out.append((None, [], "a telegram cut short by the next"))
                buf = buf[again:]
                continue
            newline = buf.find(b"\n", end)
            if newline < 0:
                break  # the CRC is on its way
            tail = buf[end + 1 : newline].strip()
            body, buf = buf[: end + 1], buf[newline + 1 :]
            out.append(self.telegram(body, tail))
        self.buffer = buf
        return out

    def telegram(self, body: bytes, tail: bytes) -> tuple:
        if tail:
            try:
                sent = int(tail, 16)
            except ValueError:
                return None, [], f"bad CRC field {tail[:8]!r}"
            if self.crc is not False and sent != crc16(body):
                return None, [], "CRC error"
        elif self.crc:
            return None, [], "telegram without a CRC (DSMR 4 and 5 send one)"
        text = body.decode("ascii", "replace")
        raw = text.splitlines()
        joined: List[str] = []
        for line in raw[1:]:
            line = line.strip()
            if line.startswith("(") and joined:  # DSMR 2.2: gas on the next line
                joined[-1] += line
            elif line and line != "!":
                joined.append(line)
        lines = [x for x in (obis.parse_line(t) for t in joined) if x is not None]
        if not lines:
            return None, [], "no data lines in the telegram"
        self.subs = self.sub_meters(lines)
        values = [raw[0].strip()] + [obis.show(x) for x in lines]
        return obis.electricity(lines), values, None

    @staticmethod
    def sub_meters(lines: List[obis.Line]) -> Dict[str, SubReading]:
        types: Dict[str, int] = {}
        for line in lines:
            if line.code == "24.1.0" and line.values:
                try:
                    types[line.channel] = int(line.values[0])
                except ValueError:
                    pass
        found: Dict[str, SubReading] = {}
        for line in lines:
            if line.medium != "0" or line.code not in ("24.2.1", "24.2.3", "24.3.0"):
                continue
            kind = KINDS.get(types.get(line.channel, MBUS_GAS))
            value = line.number()
            if kind is None or value is None or not line.values:
                continue
            m3, unit, resolution = value
            if line.code == "24.3.0":  # (capture)(..)(..)(..)(code)(unit)(value)
                unit = line.values[-2].lower() if len(line.values) > 1 else ""
            if unit not in ("m3", "m³", ""):
                continue
            capture = line.values[0]
            found.setdefault(
                kind,
                SubReading(kind, capture, capture_seconds(capture), m3, resolution),
            )
        return found


class P1Input(SerialInput):
    OPTIONS = {
        **serial_options(115200, "8N1"),
        "crc": Option("bool", None, nullable=True),
        "gas_meter": Option("str", None, nullable=True),
        "water_meter": Option("str", None, nullable=True),
    }
    PROTOCOL = "DSMR P1"

    def __init__(self, options, meter, log) -> None:
        super().__init__(options, meter, log)
        self._sent: Dict[str, Tuple[str, Optional[float], float]] = {}

    def parser(self) -> Parser:
        return P1Parser(self.options["crc"])

    def feeds(self) -> List[str]:
        o = self.options
        return [n for n in (o["gas_meter"], o["water_meter"]) if n]

    def extra(self, t_ns: int, t_wall: float) -> None:
        """Each sub-meter's new value, to the meter that takes it."""
        parser = self.current
        if not isinstance(parser, P1Parser):
            return
        o = self.options
        for kind, name in (("gas", o["gas_meter"]), ("water", o["water_meter"])):
            sub = parser.subs.get(kind)
            on_edge = self._followers.get(name or "")
            if sub is None or on_edge is None:
                continue
            before = self._sent.get(kind)
            if before is not None and before[0] == sub.capture:
                continue  # the same capture again
            rate = None
            if before is not None and before[1] is not None and sub.seconds is not None:
                hours = (sub.seconds - before[1]) / 3600.0
                if hours > 0:
                    rate = max(0.0, (sub.m3 - before[2]) / hours)
            self._sent[kind] = (sub.capture, sub.seconds, sub.m3)
            on_edge(t_ns, t_wall, RegisterFrame(sub.m3, None, rate, sub.resolution))
