"""Meter frames built from the specifications, for the register inputs'
tests: SML (BSI TR-03109-1 / FNN: TL fields, escape sequences, padding,
CRC16/X.25), IEC 62056-21 data blocks (STX, ETX, BCC) and DSMR P1
telegrams (CRC16 over '/' to '!'). Written bit by bit from the documents,
not with the code under test, so a mistake in one is not repeated in the
other. Also real frames smllib's own tests carry (DZG and Holley meters).
"""

from __future__ import annotations

from binascii import a2b_hex
from typing import List, Optional, Sequence, Tuple

ESCAPE = b"\x1b\x1b\x1b\x1b"

# Frames from smllib's tests (tests/test_frames.py), from real meters: a
# DZG meter without its PIN (1.8.0 in whole kWh, no power) and a Holley
# DTZ541 (1.8.0 in 0.1 Wh, power 16.7.0).
SML_DZG = a2b_hex(
    "1b1b1b1b0101010176051c414c02620062007263010176010102310b0a01445a47000282c0b07262"
    "016505471c2a620263f938007605"
    "1d414c02620062007263070177010b0a01445a47000282c0b0070100620affff7262016505471c2a"
    "7477070100603201010172620162006200520004445a470177070100600100ff0172620162006200"
    "52000b0a01445a47000282c0b00177070100010800ff641c01047262016200621e520363344f0177"
    "070100020800ff017262016200621e520362000101016393770076051e414c026200620072630201"
    "710163e6ba00000000001b1b1b1b1a04dad0"
)
SML_DZG_KWH = 13391.0
SML_HOLLEY = a2b_hex(
    "1b1b1b1b0101010176040000016200620072650000010176010107000002dba23c0b0a01484c5902"
    "000424a0010163945b0076040000026200620072650000070177010b0a01484c5902000424a00101"
    "f10477070100603201010101010104484c590177070100600100ff010101010b0a01484c59020004"
    "24a00177070100010800ff65001c81046502dba23d621e52ff6502aea1320177070100020800ff65"
    "001c81046502dba23d621e52ff62000177070100100700ff0101621b52005300890177070100200700"
    "ff0101622352ff6309280177070100340700ff0101622352ff6309290177070100480700ff010162"
    "2352ff63092201770701001f0700ff0101622152fe62290177070100330700ff0101622152fe624e"
    "0177070100470700ff0101622152fe622e0177070100510701ff01016208520062f0017707010051"
    "0702ff01016208520062780177070100510704ff010162085200630110017707010051070fff0101"
    "62085200630138017707010051071aff01016208520063011101770701000e0700ff0101622c52ff"
    "6301f40177070100000200000101010109312e30322e3030370177070100605a0201010101010541"
    "3031410177070100600500ff0101010165001c810401010163fc1e007604000003620062007265000"
    "00201710163e8230000001b1b1b1b1a0222ed"
)
SML_HOLLEY_KWH = 4499.8962
SML_HOLLEY_W = 137.0


def crc_x25(data: bytes) -> int:
    """CRC16/X.25: polynomial 0x1021 reflected, init 0xFFFF, xor out 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def crc16_arc(data: bytes) -> int:
    """CRC16 as DSMR P1 has it: polynomial 0x8005 reflected, init 0."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# SML type-length fields ------------------------------------------------------


def _tl(kind: int, length: int) -> bytes:
    """A TL field; length counts the TL bytes too (one TL byte up to 15)."""
    if length + 1 <= 0x0F:
        return bytes([kind | (length + 1)])
    total = length + 2  # two TL bytes
    return bytes([0x80 | kind | (total >> 4), total & 0x0F])


def octets(data: bytes) -> bytes:
    return _tl(0x00, len(data)) + data


def unsigned(value: int, size: int) -> bytes:
    return bytes([0x60 | (size + 1)]) + value.to_bytes(size, "big")


def signed(value: int, size: int) -> bytes:
    return bytes([0x50 | (size + 1)]) + value.to_bytes(size, "big", signed=True)


def sml_list(*items: bytes) -> bytes:
    return bytes([0x70 | len(items)]) + b"".join(items)


NONE = b"\x01"
UNIT_W, UNIT_WH = 27, 30


def obis_code(code: str) -> bytes:
    """'1-0:1.8.0*255' as its six bytes."""
    ab, _, rest = code.partition(":")
    cde, _, f = rest.partition("*")
    a, b = ab.split("-")
    c, d, e = cde.split(".")
    return bytes(int(x) for x in (a, b, c, d, e, f or "255"))


def entry(
    code: str, value: int, unit: int, scaler: int, status: Optional[int] = None
) -> bytes:
    """An SML_ListEntry: objName, status, valTime, unit, scaler, value, sig."""
    value_field = (
        signed(value, 8) if value < 0 or unit == UNIT_W else unsigned(value, 8)
    )
    return sml_list(
        octets(obis_code(code)),
        NONE if status is None else unsigned(status, 4),
        NONE,
        unsigned(unit, 1),
        signed(scaler, 1),
        value_field,
        NONE,
    )


def message(transaction: int, tag: int, body: bytes) -> bytes:
    """An SML_Message with its own CRC16 over everything before it."""
    head = sml_list(
        octets(transaction.to_bytes(4, "big")),
        unsigned(0, 1),
        unsigned(0, 1),
        sml_list(unsigned(tag, 2), body),
    )
    # The list header says six elements: rebuild it with the CRC and end.
    inner = head[1:]
    without_crc = bytes([0x76]) + inner
    crc = crc_x25(without_crc)
    return without_crc + unsigned(crc, 2) + b"\x00"


def sml_file(
    import_wh: Optional[float],
    export_wh: Optional[float] = None,
    power_w: Optional[int] = None,
    scaler: int = -1,
    status: Optional[int] = None,
    power_status: Optional[int] = None,
    server_id: bytes = b"\x0a\x01ESY\x11\x03\x00\x00\x00\x01",
    extra: Sequence[bytes] = (),
) -> bytes:
    """A whole SML file as a meter sends it: open, a GetList response with
    1.8.0, 2.8.0 and 16.7.0 (those given), close; escaped, padded, with its
    CRC16/X.25. Totals in Wh, written with `scaler`."""
    entries: List[bytes] = []
    if import_wh is not None:
        raw = int(round(import_wh / 10.0**scaler))
        entries.append(entry("1-0:1.8.0*255", raw, UNIT_WH, scaler, status))
    if export_wh is not None:
        raw = int(round(export_wh / 10.0**scaler))
        entries.append(entry("1-0:2.8.0*255", raw, UNIT_WH, scaler))
    if power_w is not None:
        entries.append(entry("1-0:16.7.0*255", power_w, UNIT_W, 0, power_status))
    entries.extend(extra)
    open_res = message(
        1,
        0x0101,
        sml_list(NONE, NONE, octets(b"\x00\x01"), octets(server_id), NONE, NONE),
    )
    get_list = message(
        2,
        0x0701,
        sml_list(
            NONE,
            octets(server_id),
            NONE,
            NONE,
            bytes([0x70 | len(entries)]) + b"".join(entries)
            if len(entries) < 16
            else _tl(0x70, len(entries) - 1)[:1] + b"".join(entries),
            NONE,
            NONE,
        ),
    )
    close_res = message(3, 0x0201, sml_list(NONE))
    body = open_res + get_list + close_res
    body = body.replace(ESCAPE, ESCAPE + ESCAPE)  # escape sequences doubled
    padding = (-len(body)) % 4
    body += b"\x00" * padding
    data = ESCAPE + b"\x01\x01\x01\x01" + body + ESCAPE + bytes([0x1A, padding])
    return data + crc_x25(data).to_bytes(2, "little")


def entry_with_escape() -> bytes:
    """A list entry whose value holds the escape sequence (1b1b1b1b)."""
    return entry("1-0:96.50.1*1", 0x1B1B1B1B1B, 0, 0)


# IEC 62056-21 (D0) -----------------------------------------------------------


def d0_lines(
    import_kwh: Optional[float],
    export_kwh: Optional[float] = None,
    power_kw: Optional[float] = None,
) -> str:
    lines = ["0.0.0(12345678)"]
    if import_kwh is not None:
        lines.append(f"1.8.0({import_kwh:010.3f}*kWh)")
    if export_kwh is not None:
        lines.append(f"2.8.0({export_kwh:010.3f}*kWh)")
    if power_kw is not None:
        lines.append(f"16.7.0({power_kw:07.3f}*kW)")
    lines.append("F.F(00000000)")
    return "".join(line + "\r\n" for line in lines)


def d0_block(lines: str) -> bytes:
    """A mode C data block: STX, lines, '!' CR LF, ETX, BCC (XOR of every
    byte after STX up to and including ETX)."""
    body = (lines + "!\r\n").encode("ascii") + b"\x03"
    check = 0
    for byte in body:
        check ^= byte
    return b"\x02" + body + bytes([check])


IDENT_C = b"/ABC5METER1\r\n"  # offers 9600 baud in mode C ('5')


def d0_push(lines: str, ident: bytes = b"/ESY5Q3DA1004 V3.04\r\n") -> bytes:
    """A message a meter in push mode sends: identification, blank line,
    data lines, '!' CR LF."""
    return ident + b"\r\n" + lines.encode("ascii") + b"!\r\n"


# DSMR P1 ----------------------------------------------------------------------


def p1_telegram(
    import_kwh: Tuple[float, float],
    export_kwh: Tuple[float, float] = (0.0, 0.0),
    power_kw: Tuple[float, float] = (0.0, 0.0),
    gas: Optional[Tuple[str, float]] = None,
    water: Optional[Tuple[str, float]] = None,
    crc: bool = True,
    header: str = "/ISK5\\2M550T-1012",
) -> bytes:
    """A DSMR 5 telegram (tariffs 1 and 2 of import and export, power
    delivered and returned, gas on M-Bus channel 1 and water on 2, each
    with its capture time YYMMDDhhmmssW) with its CRC16, or a DSMR 3 one
    without."""
    lines = [
        header,
        "",
        "1-3:0.2.8(50)",
        "0-0:1.0.0(240501120000S)",
        "0-0:96.1.1(4530303034303031353934373534343134)",
        f"1-0:1.8.1({import_kwh[0]:010.3f}*kWh)",
        f"1-0:1.8.2({import_kwh[1]:010.3f}*kWh)",
        f"1-0:2.8.1({export_kwh[0]:010.3f}*kWh)",
        f"1-0:2.8.2({export_kwh[1]:010.3f}*kWh)",
        "0-0:96.14.0(0002)",
        f"1-0:1.7.0({power_kw[0]:06.3f}*kW)",
        f"1-0:2.7.0({power_kw[1]:06.3f}*kW)",
        "0-0:96.7.21(00010)",
        "1-0:99.97.0(1)(0-0:96.7.19)(000101000001W)(2147483647*s)",
        "1-0:32.7.0(229.0*V)",
    ]
    if gas is not None:
        lines += [
            "0-1:24.1.0(003)",
            "0-1:96.1.0(4730303339303031363532303530323136)",
            f"0-1:24.2.1({gas[0]})({gas[1]:09.3f}*m3)",
        ]
    if water is not None:
        lines += [
            "0-2:24.1.0(007)",
            f"0-2:24.2.1({water[0]})({water[1]:09.3f}*m3)",
        ]
    body = ("\r\n".join(lines) + "\r\n!").encode("ascii")
    if not crc:
        return body + b"\r\n"
    return body + f"{crc16_arc(body):04X}\r\n".encode("ascii")


# The example telegram of the DSMR 5.0.2 P1 companion standard (section 6.12),
# as the dsmr_parser library ships it in its test fixtures (TELEGRAM_V5).
P1_SPEC_EXAMPLE = (
    b"/ISk5\\2MT382-1000\r\n"
    b"\r\n"
    b"1-3:0.2.8(50)\r\n"
    b"0-0:1.0.0(170102192002W)\r\n"
    b"0-0:96.1.1(4B384547303034303436333935353037)\r\n"
    b"1-0:1.8.1(000004.426*kWh)\r\n"
    b"1-0:1.8.2(000002.399*kWh)\r\n"
    b"1-0:2.8.1(000002.444*kWh)\r\n"
    b"1-0:2.8.2(000000.000*kWh)\r\n"
    b"0-0:96.14.0(0002)\r\n"
    b"1-0:1.7.0(00.244*kW)\r\n"
    b"1-0:2.7.0(00.000*kW)\r\n"
    b"0-0:96.7.21(00013)\r\n"
    b"0-0:96.7.9(00000)\r\n"
    b"1-0:99.97.0(0)(0-0:96.7.19)\r\n"
    b"1-0:32.32.0(00000)\r\n"
    b"1-0:52.32.0(00000)\r\n"
    b"1-0:72.32.0(00000)\r\n"
    b"1-0:32.36.0(00000)\r\n"
    b"1-0:52.36.0(00000)\r\n"
    b"1-0:72.36.0(00000)\r\n"
    b"0-0:96.13.0()\r\n"
    b"1-0:32.7.0(0230.0*V)\r\n"
    b"1-0:52.7.0(0230.0*V)\r\n"
    b"1-0:72.7.0(0229.0*V)\r\n"
    b"1-0:31.7.0(0.48*A)\r\n"
    b"1-0:51.7.0(0.44*A)\r\n"
    b"1-0:71.7.0(0.86*A)\r\n"
    b"1-0:21.7.0(00.070*kW)\r\n"
    b"1-0:41.7.0(00.032*kW)\r\n"
    b"1-0:61.7.0(00.142*kW)\r\n"
    b"1-0:22.7.0(00.000*kW)\r\n"
    b"1-0:42.7.0(00.000*kW)\r\n"
    b"1-0:62.7.0(00.000*kW)\r\n"
    b"0-1:24.1.0(003)\r\n"
    b"0-1:96.1.0(3232323241424344313233343536373839)\r\n"
    b"0-1:24.2.1(170102161005W)(00000.107*m3)\r\n"
    b"0-2:24.1.0(003)\r\n"
    b"0-2:96.1.0()\r\n"
    b"!6EEE\r\n"
)

# A DSMR 2.2 telegram from the same fixtures (TELEGRAM_V2_2): no CRC, and
# the gas value on the line after its 24.3.0 line.
P1_DSMR22_EXAMPLE = (
    b"/ISk5\\2MT382-1004\r\n"
    b"\r\n"
    b"0-0:96.1.1(00000000000000)\r\n"
    b"1-0:1.8.1(00001.001*kWh)\r\n"
    b"1-0:1.8.2(00001.001*kWh)\r\n"
    b"1-0:2.8.1(00001.001*kWh)\r\n"
    b"1-0:2.8.2(00001.001*kWh)\r\n"
    b"0-0:96.14.0(0001)\r\n"
    b"1-0:1.7.0(0001.01*kW)\r\n"
    b"1-0:2.7.0(0000.00*kW)\r\n"
    b"0-0:17.0.0(0999.00*kW)\r\n"
    b"0-0:96.3.10(1)\r\n"
    b"0-0:96.13.1()\r\n"
    b"0-0:96.13.0()\r\n"
    b"0-1:24.1.0(3)\r\n"
    b"0-1:96.1.0(000000000000)\r\n"
    b"0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n"
    b"(00001.001)\r\n"
    b"0-1:24.4.0(1)\r\n"
    b"!\r\n"
)
