"""The register inputs' parsers (SML, D0, DSMR P1) and the register meter's
rules, from frames built to the specifications and frames of real meters
the libraries' own tests carry; and the property that no sequence of
frames, bad frames, disconnects and restarts lowers a total."""

from __future__ import annotations

from typing import List, Optional

import meterframes as mf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.meter import EXPORT_PULSE, EXPORTING, IMPORTING, Meter, MeterConfig
from core.regmeter import BAD_FRAME, RegisterFrame, RegisterMeter
from inputs.d0 import D0Parser
from inputs.p1 import P1Parser
from inputs.sml import SmlParser

S = 1_000_000_000
T0 = 1_714_564_800.0


def frames(results) -> List[Optional[RegisterFrame]]:
    return [r[0] for r in results]


def bad(results) -> List[str]:
    return [r[2] for r in results if r[2] is not None]


# SML --------------------------------------------------------------------------


def test_sml_frames_of_real_meters():
    p = SmlParser()
    (dzg,) = frames(p.feed(mf.SML_DZG))
    # A DZG meter without its PIN: whole kWh, no power.
    assert dzg == RegisterFrame(mf.SML_DZG_KWH, 0.0, None, 1.0)
    (holley,) = frames(p.feed(mf.SML_HOLLEY))
    assert holley.total == pytest.approx(mf.SML_HOLLEY_KWH)
    assert holley.rate == mf.SML_HOLLEY_W and holley.resolution == pytest.approx(1e-4)


def test_sml_frame_built_from_the_spec_with_an_escape_in_it():
    frame = mf.sml_file(12_345_678.9, 2_345.6, -1234, extra=[mf.entry_with_escape()])
    assert mf.ESCAPE * 2 in frame  # the value's escape sequence, doubled
    (got,) = frames(SmlParser().feed(frame))
    assert got.total == pytest.approx(12345.6789)
    assert got.export == pytest.approx(2.3456)
    assert got.rate == -1234.0


def test_sml_crc_error_is_counted_and_the_next_frame_read_whole():
    good = mf.sml_file(1_000_000.0, None, 500)
    broken = bytearray(good)
    broken[40] ^= 0x10
    p = SmlParser()
    results = p.feed(bytes(broken) + good)
    assert bad(results) == ["CRC error"]
    assert frames(results)[1].total == 1000.0
    # A frame cut short runs into the next: one error, and the next is whole.
    results = p.feed(b"noise" + good[:70] + good)
    assert bad(results) == ["CRC error"]
    assert [f.total for f in frames(results) if f] == [1000.0]


def test_sml_unsigned_power_takes_its_sign_from_the_status_word():
    frame = mf.sml_file(1000.0, 10.0, 500, power_status=1 << 5)
    assert frames(SmlParser().feed(frame))[0].rate == 500.0  # as sent
    assert frames(SmlParser(direction_bit=5).feed(frame))[0].rate == -500.0
    quiet = mf.sml_file(1000.0, 10.0, 500, power_status=0)
    assert frames(SmlParser(direction_bit=5).feed(quiet))[0].rate == 500.0


def test_sml_garbage_gives_nothing_and_stays_bounded():
    p = SmlParser()
    assert p.feed(bytes(range(256)) * 400) == []
    assert len(p.reader.bytes) <= 50 * 1024


# DSMR P1 ------------------------------------------------------------------------


def test_p1_example_telegram_of_the_standard():
    p = P1Parser(None)
    (got,) = frames(p.feed(mf.P1_SPEC_EXAMPLE))
    assert got == RegisterFrame(4.426 + 2.399, 2.444, 244.0, 0.001)
    gas = p.subs["gas"]
    assert (gas.m3, gas.capture) == (0.107, "170102161005W")


def test_p1_dsmr22_without_crc_and_gas_on_the_next_line():
    p = P1Parser(None)
    (got,) = frames(p.feed(mf.P1_DSMR22_EXAMPLE))
    assert got.total == pytest.approx(2.002) and got.rate == pytest.approx(1010.0)
    assert p.subs["gas"].m3 == 1.001
    # Where a CRC is required, a telegram without one is refused.
    assert bad(P1Parser(True).feed(mf.P1_DSMR22_EXAMPLE)) == [
        "telegram without a CRC (DSMR 4 and 5 send one)"
    ]


def test_p1_crc_error_cut_telegram_and_export_power():
    telegram = mf.p1_telegram((1.5, 2.25), (0.5, 0.25), (0.0, 1.5))
    broken = bytearray(telegram)
    broken[60] ^= 0x01
    p = P1Parser(None)
    results = p.feed(bytes(broken) + telegram[:100] + telegram)
    assert bad(results) == ["CRC error", "a telegram cut short by the next"]
    (got,) = [f for f in frames(results) if f]
    assert got == RegisterFrame(3.75, 0.75, -1500.0, 0.001)
    # In pieces, as a serial port delivers it.
    p = P1Parser(None)
    out = []
    for i in range(0, len(telegram), 7):
        out += p.feed(telegram[i : i + 7])
    assert frames(out) == [got]


def test_p1_water_and_gas_by_their_mbus_device_type():
    p = P1Parser(None)
    p.feed(
        mf.p1_telegram(
            (1, 1), gas=("240501115500S", 12.5), water=("240501115500S", 3.25)
        )
    )
    assert p.subs["gas"].m3 == 12.5 and p.subs["water"].m3 == 3.25


# D0 --------------------------------------------------------------------------


def test_d0_block_with_bcc_and_push_message():
    d = D0Parser()
    block = mf.IDENT_C + mf.d0_block(mf.d0_lines(123.456, 7.5, 0.5))
    (got,) = frames(d.feed(block))
    assert got == RegisterFrame(123.456, 7.5, 500.0, 0.001)
    broken = bytearray(block)
    broken[-6] ^= 0x02  # a digit of a line, not the '!'
    assert bad(d.feed(bytes(broken))) == ["BCC error"]
    (pushed,) = frames(d.feed(mf.d0_push(mf.d0_lines(5.0, None, None))))
    assert pushed == RegisterFrame(5.0, None, None, 0.001)


# The register meter --------------------------------------------------------------


def meter(**kw) -> RegisterMeter:
    return RegisterMeter(MeterConfig(name="grid", pulses_per_kwh=1000.0), **kw)


def feed(m: RegisterMeter, items) -> list:
    out = []
    for t_s, item in items:
        out += m.edge(int(t_s * S), T0 + t_s, item)
    return out


def test_first_frame_waits_for_the_next_to_agree():
    m = meter(every_s=0)
    out = feed(
        m,
        [
            (1, RegisterFrame(99999.0, 0.0, 10.0, 0.001)),  # a bad first frame
            (2, RegisterFrame(100.0, 1.0, 10.0, 0.001)),
            (3, RegisterFrame(100.001, 1.0, 10.0, 0.001)),
        ],
    )
    assert [r.energy_kwh for r in out] == [100.001]
    assert m.implausible == 1 and m.pulses == 100001


def test_totals_never_go_down_nor_jump():
    m = meter(every_s=0)
    out = feed(
        m,
        [
            (1, RegisterFrame(100.0, 5.0, 100.0, 0.001)),
            (2, RegisterFrame(100.001, 5.0, 100.0, 0.001)),
            (3, RegisterFrame(99.0, 5.0, 100.0, 0.001)),  # down
            (4, RegisterFrame(150.0, 5.0, 100.0, 0.001)),  # 49 kWh in 2 s
            (5, RegisterFrame(100.002, 4.0, 100.0, 0.001)),  # export down
            (6, BAD_FRAME),
            (7, RegisterFrame(100.010, 5.002, -300.0, 0.001)),
        ],
    )
    assert [(r.energy_kwh, r.export_kwh, r.power_w) for r in out] == [
        (100.001, 5.0, 100.0),
        (100.010, 5.002, -300.0),
    ]
    assert (m.implausible, m.glitches) == (3, 1)


def test_a_meter_sending_whole_kwh_steps_by_its_digit():
    m = meter(every_s=0)
    out = feed(
        m,
        [(t, RegisterFrame(13391.0 + (t >= 3), None, None, 1.0)) for t in range(1, 5)],
    )
    assert [r.energy_kwh for r in out] == [13391.0, 13392.0, 13392.0]
    assert all(r.power_w is None for r in out)


def test_every_s_keeps_the_newest_frame_and_the_tick_delivers_it():
    m = meter(every_s=10)
    out = feed(
        m, [(t, RegisterFrame(1.0 + t / 1000, None, 5.0, 0.001)) for t in range(1, 8)]
    )
    assert [r.energy_kwh for r in out] == [1.002]  # the first agreed frame
    assert m.tick(int(11.9 * S)) == []
    (late,) = m.tick(12 * S)
    assert late.energy_kwh == 1.007 and late.time == T0 + 7


def test_restart_goes_on_from_the_journal_count():
    m = meter(pulses=100_001, every_s=0)
    out = feed(
        m,
        [
            (1, RegisterFrame(100.0, None, 1.0, 0.001)),  # below: kept out
            (2, RegisterFrame(100.0012, None, 1.0, 0.0001)),  # within its Wh
            (3, RegisterFrame(100.0013, None, 1.0, 0.0001)),
        ],
    )
    assert [r.energy_kwh for r in out] == [100.0013]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("frame"), st.floats(0, 0.005), st.floats(0, 0.002)),
            st.tuples(st.just("bad"), st.just(0.0), st.just(0.0)),
            st.tuples(st.just("wild"), st.sampled_from([-1.0, 1.0]), st.booleans()),
            st.tuples(st.just("restart"), st.just(0.0), st.just(0.0)),
            st.tuples(st.just("gap"), st.floats(0, 1e5), st.just(0.0)),
        ),
        max_size=60,
    )
)
def test_property_totals_never_go_down_and_end_on_the_last_good_register(steps):
    """Frames of a real meter (rises of up to 5 Wh in a second), bad frames,
    wild values, disconnects (gaps) and restarts from the journal's count:
    every reading's totals are at least the one before, and after the
    last reading they are the last register the meter accepted."""
    true_import, true_export = 1000.0, 10.0
    t = 0.0
    journal_pulses, journal_export = 0, None
    m = meter(every_s=0)
    readings = []
    for i, (kind, a, b) in enumerate(steps):
        t += 1.0
        if kind == "frame":
            true_import = round(true_import + a, 4)
            true_export = round(true_export + b, 4)
            item = RegisterFrame(true_import, true_export, 100.0, 0.0001)
        elif kind == "wild":  # a misread: far off, and never twice alike
            off = a * 1000.0 * (i + 1)
            imp, exp = (
                (true_import + off, true_export)
                if b
                else (true_import, true_export + off)
            )
            item = RegisterFrame(max(0.0, imp), max(0.0, exp), 1.0, 0.0001)
        elif kind == "bad":
            item = BAD_FRAME
        elif kind == "gap":
            t += a  # the cable out for a while: time passes, nothing comes
            continue
        else:  # a restart: the journal's count and export go on
            m = meter(pulses=journal_pulses, export_kwh=journal_export, every_s=0)
            continue
        for r in m.edge(int(t * S), T0 + t, item):
            readings.append(r)
            journal_pulses, journal_export = r.pulses, r.export_kwh
    for before, after in zip(readings, readings[1:]):
        assert after.energy_kwh >= before.energy_kwh - 0.0005  # Wh on restart
        assert after.pulses >= before.pulses
        assert after.export_kwh >= before.export_kwh
    for r in readings:  # never above what the meter really said
        assert r.energy_kwh <= true_import + 1e-9
        assert r.export_kwh <= true_export + 1e-9
    if readings and m.total is not None:
        assert readings[-1].energy_kwh == m.total or m.frames == 0


# Export on a pulse meter ------------------------------------------------------


def test_led_meter_with_a_direction_input_counts_export():
    m = Meter(
        MeterConfig(name="solar", estimate_fall=0, min_pulse_ms=0, max_pulse_ms=0)
    )
    out = []
    for i in range(3):
        out += m.edge((i + 1) * S, T0 + i + 1)
    out += m.edge(int(3.5 * S), T0 + 3.5, EXPORTING)
    for i in range(3, 6):
        out += m.edge((i + 1) * S, T0 + i + 1)
    out += m.edge(int(6.5 * S), T0 + 6.5, IMPORTING)
    out += m.edge(8 * S, T0 + 8)
    assert [r.pulses for r in out] == [1, 2, 3, 3, 3, 3, 4]
    assert [r.export_kwh for r in out] == [None] * 3 + [0.001, 0.002, 0.003, 0.003]
    assert out[4].power_w == pytest.approx(-3600.0)  # negative while exporting
    assert out[-1].power_w == pytest.approx(1800.0)


def test_led_meter_with_an_export_led():
    m = Meter(MeterConfig(name="solar", debounce_ms=50, estimate_fall=0))
    out = m.edge(1 * S, T0 + 1, EXPORT_PULSE) + m.edge(3 * S, T0 + 3, EXPORT_PULSE)
    out += m.edge(3 * S + 1000, T0 + 3, EXPORT_PULSE)  # a bounce
    assert [r.export_kwh for r in out] == [0.001, 0.002]
    assert out[1].power_w == pytest.approx(-1800.0) and m.glitches == 1
