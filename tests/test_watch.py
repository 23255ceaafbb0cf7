"""`power.py watch` (src/commands/watch.py) run as a subprocess: live edges, the
width histogram, diagnoses and suggested settings; --record and the replay
of the recorded edges; the kettle test; refusal beside a running daemon."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest
from conftest import power_cmd, wait_for

NS = 1_000_000_000
MS = 1_000_000
MONO0 = 7_000 * NS  # a boot-time monotonic clock, unrelated to the wall
WALL0 = 1_714_564_800.0
COUNTS = re.compile(
    r"summary: (\d+) edges in [\d.]+ s watched \([\d.]+ s from the first edge "
    r"to the last\): (\d+) pulses, (\d+) glitches, "
    r"(\d+) implausible, (\d+) ghosts"
)
STOP = re.compile(
    r"house: (\d+) pulses, glitches (\d+), implausible (\d+), ghosts (\d+)"
)


def edge_file(path: Path, edges: List[Tuple[int, str]]) -> Path:
    """A recorded edge file, as watch --record writes it."""
    lines = ["# power edges v1: MONO_NS WALL_S KIND"]
    for t, kind in edges:
        lines.append(f"{MONO0 + t} {WALL0 + t / NS!r} {kind}")
    path.write_text("\n".join(lines) + "\n")
    return path


def flashes(starts_ms, width_ms: float, start_kind="S", end_kind="E"):
    out = []
    for s in starts_ms:
        out += [(int(s * MS), start_kind), (int((s + width_ms) * MS), end_kind)]
    return out


def watch(ws, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    res = ws.power("watch", "--plain", *args, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res


def counts(text: str) -> Tuple[int, ...]:
    m = COUNTS.search(text)
    assert m, text
    return tuple(int(g) for g in m.groups())


def test_watch_a_simulated_meter_records_and_the_replay_counts_the_same(ws, tmp_path):
    ws.write(
        {
            "backend": "simulated",
            "watts": 3600,
            "speed": 50,
            "seed": 5,
            "ghosts_per_hour": 2400,
        }
    )
    record = tmp_path / "evening.edges"
    live = watch(ws, "--seconds", "120", "--record", str(record))
    edges, pulses, glitches, implausible, ghosts = counts(live.stdout)
    assert pulses > 50 and ghosts > 5
    # Two edges a flash; the last may be cut by --seconds, or not yet judged.
    assert edges - 2 * (pulses + ghosts) in (0, 1, 2)
    # Each edge on a line, with the meter's verdict and the implied power.
    assert len(re.findall(r" end +width +50\.0 ms .* pulse +\d+ W", live.stdout)) >= (
        pulses - 1
    )
    assert "ghost (narrower than min_pulse_ms 5)" in live.stdout
    assert re.search(rf"50-100 ms +{pulses} #", live.stdout), live.stdout
    assert re.search(r"1-2 ms +\d+ #", live.stdout)
    assert "suggest: METER['min_pulse_ms'] = 25" in live.stdout
    assert "suggest: METER['max_pulse_ms'] = 100" in live.stdout
    # The record holds every edge, and replays to the same counts: in watch
    # and in the daemon.
    lines = [x for x in record.read_text().splitlines() if not x.startswith("#")]
    assert len(lines) == edges
    again = watch(ws, "--replay", str(record), "--speed", "0")
    assert counts(again.stdout) == counts(live.stdout)
    ws.write(
        {"backend": "simulated"},
        DATA_DIR=str(tmp_path / "replayed"),
        LOGFILE=str(ws.logfile),
    )
    res = ws.power("--replay", str(record), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    m = STOP.search(ws.log())
    assert m, ws.log()
    assert tuple(int(g) for g in m.groups()) == (pulses, glitches, implausible, ghosts)
    # Under other settings the same evening counts differently: a tighter
    # max_pulse_ms turns every 50 ms flash into a ghost.
    ws.write(
        {"backend": "simulated"},
        METER={"name": "house", "pulses_per_kwh": 1000, "max_pulse_ms": 40},
    )
    tight = watch(ws, "--replay", str(record), "--speed", "0")
    assert counts(tight.stdout)[1] == 0
    assert counts(tight.stdout)[4] == ghosts + pulses


def test_an_inverted_sensor_is_diagnosed_and_the_other_edge_suggested(ws, tmp_path):
    # 50 ms flashes every second, with the configured edge at their end: the
    # "flashes" are the 950 ms of dark between them.
    starts = [1000.0 * i for i in range(30)]
    path = edge_file(tmp_path / "inv.edges", flashes(starts, 50, "E", "S"))
    ws.write({"backend": "simulated"}, METER={"name": "house", "pulses_per_kwh": 1000})
    res = watch(ws, "--replay", str(path), "--speed", "0")
    assert "the sensor is inverted or INPUT['edge'] is the wrong one" in res.stdout
    assert "suggest: INPUT['edge'] = 'rising'" in res.stdout
    assert counts(res.stdout)[1] == 0  # every wide "flash" is a ghost


def test_no_edges_and_lamp_flicker_are_diagnosed(ws, tmp_path):
    ws.write({"backend": "simulated"})
    empty = edge_file(tmp_path / "empty.edges", [])
    res = watch(ws, "--replay", str(empty), "--speed", "0")
    assert "diagnosis: no edges at all: check the wiring" in res.stdout
    flicker = edge_file(
        tmp_path / "lamp.edges", flashes([10.0 * i for i in range(60)], 4)
    )
    res = watch(ws, "--replay", str(flicker), "--speed", "0")
    assert "light flickering at 100 Hz" in res.stdout
    assert counts(res.stdout)[1] == 0  # 4 ms flashes 10 ms apart: no pulse


def test_flashes_all_narrower_than_the_limit_get_advice(ws, tmp_path):
    # A meter whose LED flashes for 4 ms: every flash a ghost at the default
    # min_pulse_ms 5; watch says so and what would take them.
    ws.write({"backend": "simulated"})
    narrow = edge_file(
        tmp_path / "narrow.edges", flashes([1000.0 * i for i in range(20)], 4)
    )
    res = watch(ws, "--replay", str(narrow), "--speed", "0")
    assert counts(res.stdout)[1] == 0
    assert "no flash passed the width limits" in res.stdout
    assert "suggest: METER['min_pulse_ms'] = 2  (if they are the meter's" in res.stdout


def test_a_record_that_cannot_be_written_ends_with_the_summary_and_why(ws):
    ws.write({"backend": "simulated", "watts": 3600, "speed": 50})
    res = ws.power("watch", "--plain", "--seconds", "30", "--record", "/dev/full")
    assert res.returncode == 1
    assert "summary:" in res.stdout
    assert "--record /dev/full: cannot write (No space left on device)" in res.stderr
    assert "Traceback" not in res.stderr


def test_widths_at_the_limits_and_pulse_times_only(ws, tmp_path):
    ws.write({"backend": "simulated"})
    near = edge_file(
        tmp_path / "near.edges", flashes([1000.0 * i for i in range(10)], 5.5)
    )
    res = watch(ws, "--replay", str(near), "--speed", "0")
    assert "flash widths lie within 20% of the limits" in res.stdout
    plain = tmp_path / "pulses.txt"
    plain.write_text("".join(f"{WALL0 + i:.3f}\n" for i in range(10)))
    res = watch(ws, "--replay", str(plain), "--speed", "0")
    assert "this input reports pulse times only: no widths" in res.stdout
    assert counts(res.stdout)[1] == 10


def test_kettle_test_checks_pulses_per_kwh(ws, tmp_path):
    # 1000 W (3.6 s a pulse) for a minute, then 3000 W (1.2 s) for a minute.
    starts = [3600.0 * i for i in range(18)]
    starts += [starts[-1] + 1200.0 * (i + 1) for i in range(50)]
    path = edge_file(tmp_path / "kettle.edges", flashes(starts, 50))
    ws.write({"backend": "simulated"})
    res = watch(
        ws,
        "--replay",
        str(path),
        "--speed",
        "0",
        "--seconds",
        "120",
        "--kettle",
        "2000",
    )
    assert "kettle test: switch on the 2000 W load now" in res.stdout
    assert re.search(
        r"kettle test: 1000 W before, 3000 W with the load: 2000 W "
        r"added .*pulses_per_kwh 1000 agrees",
        res.stdout,
    ), res.stdout
    res = watch(
        ws,
        "--replay",
        str(path),
        "--speed",
        "0",
        "--seconds",
        "120",
        "--kettle",
        "1000",
    )
    assert "METER['pulses_per_kwh'] may be 2000, not 1000" in res.stdout


def test_watch_leaves_a_gpio_input_to_the_daemon_but_may_simulate_beside_it(ws):
    """The daemon (here on --simulate) holds DATA_DIR: watch refuses the
    settings' GPIO input it would hold, and a simulated one, which touches
    nothing, runs beside it."""
    ws.write({"backend": "gpiod", "chip": "gpiochip0", "line": 24})
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q")
        + ["--simulate", "3600", "--speed", "20"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: ws.csv.exists(), timeout=30)
        res = ws.power("watch", "--seconds", "1")
        assert res.returncode == 1
        assert "power is running (pid" in res.stderr
        assert "power.py --kill" in res.stderr
        res = ws.power("watch", "--simulate", "3000", "--speed", "50", "--seconds", "5")
        assert res.returncode == 0, res.stderr
        assert "summary:" in res.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


@pytest.mark.parametrize("round_", range(8))
def test_ctrl_c_at_once_after_the_first_line_ends_with_a_summary(ws, round_):
    """A Ctrl-C right after the first line, over and over: always the
    summary, always the input stopped (an exit of 0 within seconds)."""
    ws.write({"backend": "simulated", "watts": 3600, "speed": 20})
    watcher = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "watch"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # written once the input is open
        assert first.startswith("watching meter"), first
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    assert "stopped" in out and "summary:" in out and "Traceback" not in err


def test_a_simulated_meter_gets_no_edge_or_pull_suggested(ws):
    # The simulated input has neither setting: suggesting one would make a
    # settings file the loader refuses.
    ws.write({"backend": "simulated", "watts": 3600, "speed": 50})
    res = watch(ws, "--seconds", "30")
    assert "suggest: METER['min_pulse_ms']" in res.stdout
    assert "INPUT['edge']" not in res.stdout and "INPUT['pull']" not in res.stdout


def test_a_fast_simulated_meter_flashes_wide_enough_to_count(ws):
    # 120 pulses a second (10,000 imp/kWh at 43.2 kW): a flash and the dark
    # after it share 8.3 ms, so min_pulse_ms must be under half of that; the
    # simulated flashes are then half the interval and all count.
    ws.write(
        {"backend": "simulated", "watts": 43200, "speed": 2, "seed": 3},
        METER={
            "name": "house",
            "pulses_per_kwh": 10000,
            "max_power_w": 60000,
            "debounce_ms": 2,
            "min_pulse_ms": 2,
        },
    )
    res = watch(ws, "--seconds", "4")
    edges, pulses, glitches, implausible, ghosts = counts(res.stdout)
    assert pulses > 200 and (glitches, implausible, ghosts) == (0, 0, 0), res.stdout


def test_record_never_overwrites_what_was_not_meant(ws, tmp_path):
    ws.write({"backend": "simulated", "watts": 3600, "speed": 50})
    kept = tmp_path / "kept.edges"
    kept.write_text("an earlier record\n")
    res = ws.power("watch", "--seconds", "2", "--record", str(kept))
    assert res.returncode == 2
    assert "the file exists; add --force to overwrite it" in res.stderr
    assert kept.read_text() == "an earlier record\n"
    res = watch(ws, "--seconds", "2", "--record", str(kept), "--force")
    assert res.returncode == 0, res.stderr
    assert kept.read_text().startswith("# power edges v1")
    # The file --replay reads, however it is named: never, even with --force.
    copy = tmp_path / "copy.edges"
    copy.write_bytes(kept.read_bytes())
    same = tmp_path / "." / "copy.edges"
    res = ws.power("watch", "--replay", str(copy), "--record", str(same), "--force")
    assert res.returncode == 2 and "that is the file --replay reads" in res.stderr
    assert copy.read_bytes() == kept.read_bytes()
    # A link is never written through, whatever it names.
    target = tmp_path / "settings-like.py"
    target.write_text("DATA_DIR = '/var/lib/power'\n")
    link = tmp_path / "link.edges"
    link.symlink_to(target)
    res = ws.power("watch", "--seconds", "2", "--record", str(link), "--force")
    assert res.returncode == 2 and "a symbolic link" in res.stderr
    assert target.read_text() == "DATA_DIR = '/var/lib/power'\n"
    assert "Traceback" not in res.stderr


def test_the_summary_says_the_time_watched_and_the_edges_span(ws):
    ws.write({"backend": "simulated", "watts": 3600, "speed": 1})
    res = watch(ws, "--seconds", "3")
    m = re.search(r"in ([\d.]+) s watched \(([\d.]+) s from the first", res.stdout)
    assert m, res.stdout
    watched, span = float(m.group(1)), float(m.group(2))
    assert 2.9 <= watched <= 3.5 and span <= watched
