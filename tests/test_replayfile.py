"""Replay files (src/core/replayfile.py) and the CSV form of a reading
(src/core/csvformat.py): real files in tmp_path, including a CSV written by the
real file sink from a real meter's readings.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import replayfile
from core.csvformat import (
    COLUMNS,
    HEADER,
    HEADER_V1,
    csv_line,
    format_number,
    format_time,
    parse_time,
)
from core.meter import Meter, MeterConfig, Reading
from core.replayfile import ReplayFileError, check_file, count_pulses, read_pulses
from sinks.file import FileSink

NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def write(tmp_path: Path, text: str, name: str = "pulses.txt") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def replay_error(path: str, meter=None) -> str:
    with pytest.raises(ReplayFileError) as info:
        list(read_pulses(path, meter))
    return str(info.value)


# ---------------------------------------------------------------------------
# Epoch-seconds files (the original monitor's format)
# ---------------------------------------------------------------------------


def test_epoch_file_with_blank_lines_and_comments(tmp_path):
    path = write(
        tmp_path,
        "# pulses from the old monitor\n"
        "1714563000.123\n"
        "\n"
        "   \n"
        "1714563003.723\n"
        "  # an indented comment\n"
        "\t1714563007\t\n"
        "1714563007\n"
        "1.7145630104e9\n",
    )
    assert list(read_pulses(path)) == [
        (2, 1714563000.123),
        (5, 1714563003.723),
        (7, 1714563007.0),
        (8, 1714563007.0),  # equal times are not going backwards
        (9, 1714563010.4),
    ]
    assert count_pulses(path) == 5


def test_empty_and_comment_only_files_have_no_pulses(tmp_path):
    assert count_pulses(write(tmp_path, "", "a.txt")) == 0
    assert count_pulses(write(tmp_path, "# nothing\n\n#\n", "b.txt")) == 0


def test_windows_line_endings(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"1714563000.5\r\n\r\n1714563001.5\r\n")
    assert list(read_pulses(str(path))) == [(1, 1714563000.5), (3, 1714563001.5)]


def test_last_line_without_newline(tmp_path):
    path = write(tmp_path, "1714563100.5\n1714563200.25")
    assert list(read_pulses(path)) == [(1, 1714563100.5), (2, 1714563200.25)]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.integers(946_684_800_000, 4_102_444_799_999), min_size=1, max_size=50
    ).map(sorted)
)
def test_epoch_files_round_trip_millisecond_times(tmp_path_factory, millis):
    tmp_path = tmp_path_factory.mktemp("rt")
    lines = [f"{m // 1000}.{m % 1000:03d}" for m in millis]
    path = write(tmp_path, "# generated\n" + "\n".join(lines) + "\n")
    got = list(read_pulses(path))
    assert [n for n, _ in got] == list(range(2, len(millis) + 2))
    assert [t for _, t in got] == [float(x) for x in lines]
    assert count_pulses(path) == len(millis)


@pytest.mark.parametrize(
    "bad",
    ["hello", "1714563000.1.2", "1714563000,5", "12:00:00", "0x10", "1e"],
)
def test_bad_line_is_reported_with_its_line_number(tmp_path, bad):
    path = write(tmp_path, f"# header\n1714563000\n\n{bad}\n1714563009\n")
    message = replay_error(path)
    assert message.startswith(f"{path} line 4: ")
    assert repr(bad) in message
    assert "epoch seconds" in message


def test_bad_line_stops_iteration_after_the_good_ones(tmp_path):
    path = write(tmp_path, "1714563010\n1714563020\noops\n1714563030\n")
    it = read_pulses(path)
    assert next(it) == (1, 1714563010.0)
    assert next(it) == (2, 1714563020.0)
    with pytest.raises(ReplayFileError, match="line 3"):
        next(it)


def _outcome(call, path):
    try:
        call(path)
    except ReplayFileError as exc:
        return str(exc)
    return "ok"


UP_FRONT_CASES = [
    "1714563000\n1714563001\n",
    "1714563000\n1714563001",  # no newline at the end
    "1714563000\r\n1714563001\r\n",
    "1714563000\r1714563001\r",  # old Mac line ends
    "\ufeff1714563000\n1714563001\n",
    "1714563000\n\n1714563001\n",
    "# header\n1714563000\n",
    "1714563000\n1714563000\n",  # equal times are in order
    "1714563001\n1714563000\n",
    "1714563000\nnan\n1714563001\n",
    "1714563000\ninf\n",
    "1714563000\n-1714563001\n",
    "1714563000\n4102444800\n",
    "946684799.999\n",
    "946684800\n",
    "1714563000\n1714563001 # note\n",
    "1714563000\n1_714_563_001\n",
    " 1714563000 \n\t1714563001\t\n",
    "1714563000\n" + "1" * 4094 + "\n",
    "1714563000\n" + "0" * 4085 + "1714563001\n",  # 4095 characters
    "1714563000\n" + "0" * 4086 + "1714563001\n",
    "1714563000\n" + "0" * 4086 + "1714563001",  # no newline at the end
    "time,meter,pulses,energy_kwh,power_w,interval_s\n"
    "2024-05-01T12:00:00.000Z,house,1,0.001,,\n",
]


@pytest.mark.parametrize("chunk", [7, 64, 1 << 18])
@pytest.mark.parametrize("text", UP_FRONT_CASES)
def test_up_front_check_agrees_with_the_parser(tmp_path, monkeypatch, text, chunk):
    """The bulk check before a replay accepts exactly what the parser
    accepts, and a file it refuses is named as the parser names it, however
    the file falls into chunks."""
    monkeypatch.setattr(replayfile, "CHECK_CHUNK", chunk)
    path = tmp_path / "p.txt"
    path.write_bytes(text.encode())
    assert _outcome(check_file, str(path)) == _outcome(count_pulses, str(path))


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(
        st.one_of(
            st.floats(946_684_700, 4_102_444_900).map(lambda t: f"{t:.3f}"),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.sampled_from(["", "#", " ", "x", "1e9", "\r"]),
        ),
        max_size=40,
    ),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_up_front_check_agrees_with_the_parser_on_any_file(
    tmp_path_factory, times, chunk
):
    path = tmp_path_factory.mktemp("r") / "p.txt"
    path.write_text("\n".join(times))
    old = replayfile.CHECK_CHUNK
    replayfile.CHECK_CHUNK = chunk
    try:
        assert _outcome(check_file, str(path)) == _outcome(count_pulses, str(path))
    finally:
        replayfile.CHECK_CHUNK = old


def test_up_front_check_of_a_sorted_file_is_the_bulk_pass(tmp_path, monkeypatch):
    """A plain, sound file is vouched for without the line-by-line parser."""
    path = write(tmp_path, "".join(f"{1714563000 + i}\n" for i in range(1000)))

    def parser(*args):
        raise AssertionError("the line-by-line parser ran")

    monkeypatch.setattr(replayfile, "read_edges", parser)
    check_file(path)  # no AssertionError
    with pytest.raises(AssertionError):
        check_file(path, "house")  # a meter's rows: only the parser can tell


def test_count_pulses_checks_the_whole_file(tmp_path):
    path = write(tmp_path, "\n".join(str(1714563000 + i) for i in range(100)) + "\nx\n")
    with pytest.raises(ReplayFileError, match="line 101"):
        count_pulses(path)


def test_long_bad_line_is_cut_in_the_message(tmp_path):
    bad = "z" * 500
    message = replay_error(write(tmp_path, bad + "\n"))
    assert "line 1" in message
    assert len(message) < 300


@pytest.mark.parametrize(
    "value", ["nan", "NaN", "-1714563000", "-0.5", "inf", "-inf", "Infinity"]
)
def test_nan_negative_and_infinite_times_are_rejected(tmp_path, value):
    path = write(tmp_path, f"1714563000\n{value}\n")
    message = replay_error(path)
    assert message.startswith(f"{path} line 2: {value!r}")


def test_time_going_backwards_names_both_lines(tmp_path):
    path = write(
        tmp_path,
        "1714563000.0\n# comment\n1714563010.5\n\n1714563005.25\n",
    )
    message = replay_error(path)
    assert message.startswith(f"{path} line 5: ")
    assert "1714563005.25" in message
    assert "line 3" in message
    assert "1714563010.5" in message
    assert "time order" in message


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        count_pulses(str(tmp_path / "absent.txt"))


def test_undecodable_bytes_are_a_bad_line_not_a_crash(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"1714563000\n\xff\xfe\x00garbage\n")
    with pytest.raises(ReplayFileError, match="line 2"):
        count_pulses(str(path))


# ---------------------------------------------------------------------------
# The file sink's CSV
# ---------------------------------------------------------------------------


def csv_text(*rows: str) -> str:
    """A CSV as a file sink before the estimate column wrote it."""
    return HEADER_V1 + "\n" + "\n".join(rows) + "\n"


def test_csv_header_is_recognised_and_idle_rows_skipped(tmp_path):
    path = write(
        tmp_path,
        csv_text(
            "2024-05-01T12:00:00.000Z,main,1,0.001,,",
            "2024-05-01T12:00:03.600Z,main,2,0.002,1000,3.6",
            "2024-05-01T12:05:03.600Z,main,2,0.002,0,300",  # idle row
            "2024-05-01T12:10:00.000Z,main,3,0.003,6.07,596.4",
        ),
        "power.csv",
    )
    t0 = 1714564800.0
    assert list(read_pulses(path)) == [
        (2, t0),
        (3, t0 + 3.6),
        (5, t0 + 600.0),
    ]
    assert count_pulses(path) == 3


def test_csv_meter_filter_and_per_meter_idle_rows(tmp_path):
    path = write(
        tmp_path,
        csv_text(
            "2024-05-01T12:00:00.000Z,grid,10,0.01,,",
            "2024-05-01T12:00:01.000Z,heat,10,0.0125,,",  # same count, other meter
            "2024-05-01T12:00:02.000Z,grid,11,0.011,1800,2",
            "2024-05-01T12:00:03.000Z,heat,10,0.0125,0,2",  # heat idle
            "2024-05-01T12:00:04.000Z,grid,11,0.011,0,2",  # grid idle
            "2024-05-01T12:00:05.000Z,heat,11,0.01375,1125,4",
        ),
        "power.csv",
    )
    t0 = 1714564800.0
    assert [n for n, _ in read_pulses(path)] == [2, 3, 4, 7]
    assert list(read_pulses(path, "grid")) == [(2, t0), (4, t0 + 2)]
    assert list(read_pulses(path, "heat")) == [(3, t0 + 1), (7, t0 + 5)]
    assert count_pulses(path, "nobody") == 0
    assert count_pulses(path) == 4


def test_csv_with_comments_and_blank_lines(tmp_path):
    path = write(
        tmp_path,
        "# exported\n\n" + csv_text("2024-05-01T12:00:00.250Z,main,1,0.001,,"),
    )
    assert list(read_pulses(path)) == [(4, 1714564800.25)]


@pytest.mark.parametrize(
    "row, found",
    [
        ("2024-05-01T12:00:00.000Z,main,1,0.001,", 5),
        ("2024-05-01T12:00:00.000Z,main,1,0.001,,,", 7),
        ("2024-05-01T12:00:00.000Z", 1),
    ],
)
def test_csv_wrong_field_count(tmp_path, row, found):
    path = write(
        tmp_path,
        csv_text("2024-05-01T11:00:00.000Z,main,1,0.001,,", row),
        "power.csv",
    )
    message = replay_error(path)
    assert message.startswith(f"{path} line 3: expected 6 CSV fields")
    assert f"found {found}" in message


@pytest.mark.parametrize(
    "row",
    [
        "2024-05-01 12:00:00,main,1,0.001,,",  # no Z
        "yesterday,main,1,0.001,,",
        "2024-05-01T12:00:00.000Z,main,one,0.001,,",
        "2024-05-01T12:00:00.000Z,main,1.5,0.001,,",
        "2024-13-01T12:00:00.000Z,main,1,0.001,,",
    ],
)
def test_csv_bad_reading_is_reported_with_its_line_number(tmp_path, row):
    path = write(tmp_path, csv_text(row), "power.csv")
    message = replay_error(path)
    assert message.startswith(f"{path} line 2: ")
    assert "file sink's CSV" in message


def test_csv_with_a_foreign_header_is_rejected(tmp_path):
    path = write(
        tmp_path, "time,meter,watts\n2024-05-01T12:00:00.000Z,main,5\n", "x.csv"
    )
    message = replay_error(path)
    assert message.startswith(f"{path} line 1: CSV header 'time,meter,watts'")
    assert HEADER in message


def test_csv_time_going_backwards(tmp_path):
    path = write(
        tmp_path,
        csv_text(
            "2024-05-01T12:00:10.000Z,main,1,0.001,,",
            "2024-05-01T12:00:05.000Z,main,2,0.002,,",
        ),
        "power.csv",
    )
    message = replay_error(path)
    assert message.startswith(f"{path} line 3: ")
    assert "line 2" in message


def test_csv_written_by_the_file_sink_replays_its_pulses(tmp_path):
    """A real meter's readings through the real file sink, then back."""
    cfg = MeterConfig(name="main", idle_timeout_s=60, debounce_ms=50)
    meter = Meter(cfg)
    wall0 = 1714564800.0
    # pulses at these seconds; 0.01 s after 10 is a glitch; a 200 s gap
    # gives an idle row
    edges = [0.0, 3.6, 7.2, 10.0, 10.01, 14.0, 214.0, 215.0, 216.5]
    readings = []
    for s in edges:
        readings += meter.edge(int(s * NS), wall0 + s)
    readings += meter.tick(int(400 * NS))  # one more idle row at the end
    assert sum(1 for r in readings if r.power_w == 0.0) == 2
    assert meter.glitches == 1

    path = tmp_path / "power.csv"
    sink = FileSink("file", {"path": str(path)}, logging.getLogger("test"))
    sink.open()
    sink.write(readings[:4])
    sink.write(readings[4:])
    sink.close()

    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 1 + len(readings)
    pulse_times = [wall0 + s for s in edges if s != 10.01]
    got = list(read_pulses(str(path)))
    assert [t for _, t in got] == pytest.approx(pulse_times, abs=5e-4)
    assert count_pulses(str(path), "main") == meter.pulses == 8
    assert count_pulses(str(path), "other") == 0


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 500_000), min_size=1, max_size=60),
    idle_s=st.sampled_from([0, 30, 120]),
    start=st.integers(0, 10**6),
)
def test_csv_of_any_meter_run_replays_exactly_its_pulses(
    tmp_path_factory, gaps, idle_s, start
):
    """Whatever the meter emits, the CSV replays one time per accepted
    pulse, in order, and never one for an idle row."""
    meter = Meter(MeterConfig(idle_timeout_s=idle_s), pulses=start)
    t_ms = 0
    readings = []
    for g in gaps:  # gaps in ms; some are glitches, some implausible
        t_ms += g
        readings += meter.edge(t_ms * 1_000_000, 1714564800.0 + t_ms / 1000)
    path = tmp_path_factory.mktemp("csv") / "power.csv"
    path.write_text(HEADER + "\n" + "".join(csv_line(r) + "\n" for r in readings))
    pulse_rows = [r for r in readings if not r.estimate]
    got = [t for _, t in read_pulses(str(path))]
    assert len(got) == meter.pulses - start
    assert got == [parse_time(format_time(r.time)) for r in pulse_rows]


# ---------------------------------------------------------------------------
# csvformat
# ---------------------------------------------------------------------------


def test_format_time_exact():
    assert format_time(1714564800.123) == "2024-05-01T12:00:00.123Z"
    assert format_time(1714564800) == "2024-05-01T12:00:00.000Z"
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(951782400.5) == "2000-02-29T00:00:00.500Z"
    # rounding to the nearest millisecond, carrying into the seconds
    assert format_time(1714564800.9996) == "2024-05-01T12:00:01.000Z"
    assert format_time(1714564799.0004) == "2024-05-01T11:59:59.000Z"


def test_parse_time_exact():
    assert parse_time("2024-05-01T12:00:00.123Z") == pytest.approx(
        1714564800.123, abs=1e-6
    )
    assert parse_time("2024-05-01T12:00:00Z") == 1714564800.0
    assert parse_time(" 2024-05-01T12:00:00.5Z ") == 1714564800.5
    assert parse_time("1970-01-01T00:00:00.000Z") == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00.123",  # no Z
        "2024-05-01T12:00:00.123+00:00",
        "2024-05-01 12:00:00.123Z",
        "2024-05-01T12:00:00.1e2Z",
        "2024-05-01T12:00:00.-5Z",
        "2024-02-30T12:00:00.000Z",
        "",
        "Z",
    ],
)
def test_parse_time_rejects(text):
    with pytest.raises(ValueError):
        parse_time(text)


millis = st.integers(0, 4_102_444_800_000 - 1)  # 1970 to the end of 2099


@settings(max_examples=300, deadline=None)
@given(millis)
def test_format_time_matches_datetime(ms):
    dt = EPOCH + timedelta(milliseconds=ms)
    want = dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
    assert format_time(ms / 1000) == want
    assert len(want) == 24


@settings(max_examples=300, deadline=None)
@given(millis)
def test_parse_format_round_trip_at_millisecond_precision(ms):
    text = format_time(ms / 1000)
    t = parse_time(text)
    assert round(t * 1000) == ms
    assert abs(t - ms / 1000) < 1e-6
    assert format_time(t) == text


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 4_102_444_799.0, allow_nan=False))
def test_format_then_parse_is_within_half_a_millisecond(t):
    assert abs(parse_time(format_time(t)) - t) <= 0.0005 + 1e-6


def test_csv_line_exact():
    r = Reading(1714564803.6, "main", 2, 0.002, 1000.0, 3.6)
    assert csv_line(r) == "2024-05-01T12:00:03.600Z,main,2,0.002,1000,3.6,0,,,"
    r = Reading(1714564800.123, "grid", 12345, 12.345678901, 1234.5678, 2.9166666)
    assert csv_line(r) == (
        "2024-05-01T12:00:00.123Z,grid,12345,12.345679,1234.57,2.917,0,,,"
    )
    # A file begun before the estimate column goes on without it.
    assert csv_line(r, 6) == (
        "2024-05-01T12:00:00.123Z,grid,12345,12.345679,1234.57,2.917"
    )


def test_csv_line_of_an_estimate():
    r = Reading(1714564875.0, "main", 2, 0.002, 48.0, 75.0, True)
    assert csv_line(r) == "2024-05-01T12:01:15.000Z,main,2,0.002,48,75,1,,,"


def test_csv_line_unknown_power_gives_empty_fields():
    r = Reading(1714564800.0, "main", 1, 0.001, None, None)
    line = csv_line(r)
    assert line == "2024-05-01T12:00:00.000Z,main,1,0.001,,,0,,,"
    assert len(line.split(",")) == len(COLUMNS) == 10


def test_csv_line_idle_reading_has_zero_power():
    r = Reading(1714565100.0, "main", 1, 0.001, 0.0, 300.0, True)
    assert csv_line(r) == "2024-05-01T12:05:00.000Z,main,1,0.001,0,300,1,,,"


def test_format_number():
    assert format_number(None, 2) == ""
    assert format_number(0.0, 2) == "0"
    assert format_number(-0.0, 2) == "0"
    assert format_number(-0.001, 2) == "0"  # rounds to -0.00
    assert format_number(1000.0, 2) == "1000"
    assert format_number(1.5, 2) == "1.5"
    assert format_number(1.005, 6) == "1.005"
    assert format_number(2.999, 2) == "3"
    assert format_number(-12.25, 1) == "-12.2"  # an exact tie rounds to even
    assert format_number(100, 0) == "100"
    assert format_number(10.0, 3) == "10"


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-1e9, 1e9, allow_nan=False),
    st.integers(0, 6),
)
def test_format_number_parses_back_within_its_places(value, places):
    text = format_number(value, places)
    assert text
    assert not (text.endswith("0") and "." in text)
    assert not text.endswith(".")
    assert text != "-0"
    assert abs(float(text) - value) <= 0.5 * 10**-places + 1e-9 * abs(value)


@settings(max_examples=200, deadline=None)
@given(
    t_ms=millis,
    name=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
        min_size=1,
        max_size=64,
    ),
    pulses=st.integers(0, 10**12),
    energy=st.floats(-1e6, 1e9, allow_nan=False),
    power=st.one_of(st.none(), st.floats(0, 1e7, allow_nan=False)),
)
def test_csv_line_has_ten_fields_and_parses_back(t_ms, name, pulses, energy, power):
    interval = None if power is None else 1.0
    r = Reading(t_ms / 1000, name, pulses, energy, power, interval)
    fields = csv_line(r).split(",")
    assert len(fields) == 10 and fields[6] == "0" and fields[7:] == ["", "", ""]
    assert round(parse_time(fields[0]) * 1000) == t_ms
    assert fields[1] == name
    assert int(fields[2]) == pulses
    assert abs(float(fields[3]) - energy) <= 5e-7 + 1e-12 * abs(energy)
    if power is None:
        assert fields[4] == "" and fields[5] == ""
    else:
        assert abs(float(fields[4]) - power) <= 5e-3 + 1e-12 * power
        assert fields[5] == "1"


def test_file_sink_goes_on_in_the_columns_of_an_older_file(tmp_path):
    """A CSV begun before the estimate column keeps its six columns (the
    header cannot change under its rows); a new file has them all."""
    old = tmp_path / "old.csv"
    old.write_text(HEADER_V1 + "\n2024-05-01T12:00:00.000Z,main,1,0.001,,\n")
    new = tmp_path / "new.csv"
    readings = [
        Reading(1714564803.6, "main", 2, 0.002, 1000.0, 3.6),
        Reading(1714564808.1, "main", 2, 0.002, 800.0, 4.5, True),
    ]
    for path in (old, new):
        sink = FileSink("file", {"path": str(path)}, logging.getLogger("test"))
        sink.open()
        sink.write(readings)
        sink.close()
    assert old.read_text().splitlines()[1:] == [
        "2024-05-01T12:00:00.000Z,main,1,0.001,,",
        "2024-05-01T12:00:03.600Z,main,2,0.002,1000,3.6",
        "2024-05-01T12:00:08.100Z,main,2,0.002,800,4.5",
    ]
    assert new.read_text().splitlines() == [
        HEADER,
        "2024-05-01T12:00:03.600Z,main,2,0.002,1000,3.6,0,,,",
        "2024-05-01T12:00:08.100Z,main,2,0.002,800,4.5,1,,,",
    ]
    assert [t for _, t in read_pulses(str(old))] == pytest.approx(
        [1714564800.0, 1714564803.6]
    )
    assert [t for _, t in read_pulses(str(new))] == pytest.approx([1714564803.6])
