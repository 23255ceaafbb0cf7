"""The console line per reading of a foreground run, through the real CLI."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from conftest import write_replay

T0 = 1_700_000_000.0
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def expected_line(time_text, meter, pulses, energy, power, estimate) -> str:
    """The console's line as the manual shows it, from a journal row."""
    watts = "       ? W" if power is None else f"{power:8.1f} W"
    if estimate:
        watts = "<" + watts[1:]  # an upper bound, not a pulse's mean
    return f"{time_text}  {meter}  {watts}  {energy:12.3f} kWh  pulse {pulses}"


def test_a_line_per_reading_as_the_journal_has_it(ws, tmp_path):
    """Pulses (the first of unknown power), the estimates of a long gap and
    the idle reading after it, each a line with the journal's values."""
    ws.write(
        {"backend": "simulated"},
        METER={"name": "house", "pulses_per_kwh": 1000, "idle_timeout_s": 600},
    )
    times = [T0 + 0.0005, T0 + 3.7, T0 + 5.2, T0 + 5.9996] + [T0 + 1000 + 0.25]
    times += [T0 + 59_999.9995 + i * 0.3 for i in range(4)]  # a minute boundary
    replay = write_replay(tmp_path / "p.txt", times)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    try:
        rows = conn.execute(
            "SELECT time, meter, pulses, energy_kwh, power_w, estimate "
            "FROM readings ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    assert any(r[5] and r[4] == 0.0 for r in rows)  # the idle reading
    assert any(r[5] and r[4] > 0 for r in rows)  # estimates
    assert rows[0][4] is None
    lines = res.stdout.splitlines()
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        ms = int(round(row[0] * 1000))  # UTC to the millisecond, with Z
        at = EPOCH + timedelta(milliseconds=ms)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        assert line == expected_line(stamp, *row[1:]), (line, row)
