"""Input backend `sml`: a meter that speaks SML (Smart Message Language)
through its optical interface, as most German, Austrian and Swiss smart
meters (eHZ, EDL21, "moderne Messeinrichtung") do, at 9600 8N1 by default.

Frames are found and checked (escape sequences, CRC16/X.25) and their
values read by smllib. What a frame gives: OBIS 1.8.0 (the import total;
the tariffs 1.8.1 + 1.8.2 where 1.8.0 is missing), 2.8.0 (the export total)
and 16.7.0 (the power, signed: negative while exporting). A meter whose PIN
is not entered sends whole kWh and no power: the totals are taken at the
resolution they have (their scaler) and the power stays unknown. A meter
that sends its power unsigned says the direction in a status word: with
`direction_bit` set, the power is negative while that bit of the status of
16.7.0 (else of 1.8.0) is set.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from core.options import Option
from core.regmeter import RegisterFrame
from inputs.serialport import Parser, SerialInput, serial_options

START = b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01"  # escape and version 1
UNIT_W = 27
UNIT_WH = 30
UNIT_NAMES = {UNIT_W: "W", UNIT_WH: "Wh", 29: "varh", 33: "A", 35: "V", 44: "Hz"}


class SmlParser(Parser):
    def __init__(self, direction_bit: Optional[int] = None) -> None:
        from smllib import SmlStreamReader

        self.reader = SmlStreamReader()
        self.direction_bit = direction_bit

    def feed(self, data: bytes) -> List[tuple]:
        from smllib.errors import CrcError

        self.reader.add(data)
        out: List[tuple] = []
        while True:
            try:
                frame = self.reader.get_frame()
            except CrcError as exc:
                out.append((None, [], "CRC error"))
                # A frame cut short runs into the next one: that one is
                # whole, so it is read again from its own start.
                again = bytes(exc.msg).find(START, 1)
                if again > 0:
                    self.reader.bytes = bytes(exc.msg)[again:] + self.reader.bytes
                continue
            except Exception as exc:  # a cut frame smllib cannot take apart
                self.reader.clear()
                out.append((None, [], f"unreadable frame ({type(exc).__name__})"))
                break
            if frame is None:
                return out
            try:
                entries = frame.get_obis()
            except Exception as exc:
                out.append((None, [], f"unreadable frame ({type(exc).__name__})"))
                continue
            out.append(self.convert(entries))
        return out

    def convert(self, entries) -> tuple:
        """(RegisterFrame or None, values as text, None) of one frame."""
        found: Dict[str, Tuple[float, float, Optional[int]]] = {}
        text = []
        for e in entries:
            obis = e.obis
            value = e.value
            unit = UNIT_NAMES.get(e.unit or 0, "")
            if not isinstance(value, int):
                text.append(f"{obis.obis_code} = {value}")
                continue
            scaler = e.scaler or 0
            scaled = value * 10.0**scaler
            if e.unit == UNIT_WH:  # shown in kWh, to the register's digit
                places = max(0, 3 - scaler)
                text.append(f"{obis.obis_code} = {scaled / 1000:.{places}f} kWh")
            else:
                text.append(f"{obis.obis_code} = {scaled:g} {unit}".rstrip())
            if obis.startswith("01") and e.unit in (UNIT_W, UNIT_WH):
                step = 10.0**scaler
                found.setdefault(obis.obis_short, (scaled, step, e.status))
        frame = self.register_frame(found)
        return frame, text, None

    def register_frame(self, found) -> Optional[RegisterFrame]:
        def total(code: str, tariffs: Tuple[str, ...]) -> Tuple[Optional[float], float]:
            if code in found:
                return found[code][0] / 1000.0, found[code][1] / 1000.0
            parts = [found[t] for t in tariffs if t in found]
            if not parts:
                return None, 0.0
            return sum(p[0] for p in parts) / 1000.0, max(p[1] for p in parts) / 1000.0

        imported, res_in = total("1.8.0", ("1.8.1", "1.8.2"))
        exported, res_out = total("2.8.0", ("2.8.1", "2.8.2"))
        if imported is None and exported is None:
            return None
        power = found.get("16.7.0")
        rate = None if power is None else power[0]
        bit = self.direction_bit
        if rate is not None and bit is not None and rate >= 0:
            status = (
                power[2]
                if power[2] is not None
                else found.get("1.8.0", (0, 0, None))[2]
            )
            if status is not None and status >> bit & 1:
                rate = -rate
        return RegisterFrame(imported, exported, rate, max(res_in, res_out))


class SmlInput(SerialInput):
    OPTIONS = {
        **serial_options(9600, "8N1"),
        "direction_bit": Option("int", None, nullable=True, minimum=0, maximum=63),
    }
    PROTOCOL = "SML"

    def parser(self) -> Parser:
        return SmlParser(self.options["direction_bit"])
