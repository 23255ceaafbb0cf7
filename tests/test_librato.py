"""The Librato sink against a local server that checks the documented API."""

from __future__ import annotations

import pytest
from conftest import pulse_rows, read_csv, write_replay
from librato_server import LibratoAPI
from loadmodel import bucket_means, pulse_times, varying_load

T0 = 1_700_000_040.0  # a whole minute
SECRET = "librato-Token-0123456789"


@pytest.fixture
def api():
    server = LibratoAPI("me@example.com", SECRET)
    server.start()
    yield server
    server.stop()


def librato_sink(api, **extra):
    sink = {
        "type": "librato",
        "user": "me@example.com",
        "token": SECRET,
        "api_url": api.url,
        "flush_interval_s": 0.2,
        "retry_max_s": 0.5,
    }
    sink.update(extra)
    return sink


def by_name(api, name):
    return sorted(
        (g for g in api.gauges if g["name"] == name), key=lambda g: g["measure_time"]
    )


def test_every_reading_is_counted_in_exactly_one_aggregate(ws, api, tmp_path):
    ws.write(
        {"backend": "simulated"},
        SINKS=[{"type": "file", "path": str(ws.csv)}, librato_sink(api, batch_size=7)],
    )
    # 3 s apart for 10 minutes, then estimates in a gap, then more pulses.
    times = [T0 + i * 3 for i in range(200)]
    times += [times[-1] + 400 + i * 1.5 for i in range(1, 41)]
    replay = write_replay(tmp_path / "p.txt", times)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr

    rows = read_csv(ws.csv)
    known = [r for r in rows if r["power_w"] != "" and r["estimate"] == "0"]
    assert any(r["estimate"] == "1" for r in rows)  # left out of aggregates
    power = by_name(api, "power.power_w")
    assert sum(g["count"] for g in power) == len(known) == 239
    times_seen = [(g["source"], g["measure_time"]) for g in power]
    assert len(times_seen) == len(set(times_seen))  # one aggregate per period
    assert all(g["measure_time"] % 60 == 0 for g in power)
    assert {g["source"] for g in power} == {"house"}
    first = power[0]
    assert first["measure_time"] == int(T0)
    assert first["count"] == 19  # 20 pulses in the first minute, first unknown
    assert first["min"] == first["max"] == pytest.approx(1200.0)
    assert first["sum"] / first["count"] == pytest.approx(1200.0)
    # The first pulse after the gap (9 W over 401.5 s) reaches 38.5 s into
    # its period, the 14 pulses of 2400 W after it cover 21 s: a
    # time-weighted mean of 853 W, where a plain one would say 2241 W.
    after = next(g for g in power if g["min"] < 10)
    assert after["count"] == 15
    mean = (3600 / 401.5 * 38.5 + 2400.0 * 21.0) / 59.5
    assert after["sum"] / after["count"] == pytest.approx(mean, rel=1e-6)

    energy = by_name(api, "power.energy_kwh")
    assert energy[-1]["value" if "value" in energy[-1] else "max"] == pytest.approx(
        0.24
    )
    for g in api.requests:
        assert g["path"] == "/v1/metrics"


def test_server_errors_are_retried_without_losing_a_reading(ws, api, tmp_path):
    api.fail_next = 3
    ws.write(
        {"backend": "simulated"},
        SINKS=[librato_sink(api, prefix="home.elec", period_s=10)],
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(100)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    power = by_name(api, "home.elec.power_w")
    assert sum(g["count"] for g in power) == 99
    assert [g["measure_time"] for g in power] == [int(T0) + 10 * i for i in range(10)]
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "server error" in errors[0]


def test_bad_token_is_reported_once_and_never_logged(ws, api, tmp_path):
    wrong = "wrong-Token-987654321"
    ws.write(
        {"backend": "simulated"},
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            librato_sink(api, token=wrong),
        ],
        DRAIN_TIMEOUT_S=2,
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(20)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-v")
    status = ws.power("--status")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert sum("401 Unauthorized" in line for line in errors) == 1
    assert len(pulse_rows(read_csv(ws.csv))) == 20
    for text in (res.stderr, res.stdout, status.stdout):
        assert wrong not in text and SECRET not in text
    assert "sink librato: backlog 20 readings" in status.stdout


def test_api_url_must_be_http(ws):
    ws.write(
        {"backend": "simulated"},
        SINKS=[{"type": "librato", "user": "u", "token": "t", "api_url": "ftp://x"}],
    )
    res = ws.power("--nodaemon")
    assert res.returncode == 2
    assert "api_url" in res.stderr and "http(s)://host[:port]" in res.stderr


def test_a_paced_replay_sends_each_period_once(ws, api, tmp_path):
    # Replayed readings lie in the past: only a later reading (or the end of
    # the replay) closes their period, never the wall clock.
    ws.write({"backend": "simulated"}, SINKS=[librato_sink(api, period_s=60)])
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(300)])
    res = ws.power("--replay", str(replay), "--speed", "100", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    power = by_name(api, "power.power_w")
    assert [g["measure_time"] for g in power] == [int(T0) + 60 * i for i in range(5)]
    assert sum(g["count"] for g in power) == 299


def test_period_averages_are_time_weighted_means(ws, api, tmp_path):
    """Librato's average (sum / count) of each period against the true mean
    power of a known varying load."""
    seconds = 3 * 3600
    watts = varying_load(seconds)
    start = int(T0) - int(T0) % 3600
    api10 = LibratoAPI("me@example.com", SECRET)
    api10.start()
    try:
        ws.write(
            {"backend": "simulated"},
            SINKS=[
                librato_sink(api, period_s=60),
                {**librato_sink(api10, period_s=600), "name": "librato10"},
            ],
        )
        replay = write_replay(tmp_path / "p.txt", pulse_times(watts, start, 1000))
        res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q")
        assert res.returncode == 0, res.stderr
    finally:
        api10.stop()
    for server, period in ((api, 60), (api10, 600)):
        truth = bucket_means(watts, period)
        got = {
            (g["measure_time"] - start) // period: g
            for g in by_name(server, "power.power_w")
        }
        assert set(got) == set(range(len(truth))), period
        for i, true in enumerate(truth):
            g = got[i]
            mean = g["sum"] / g["count"]
            assert g["min"] <= mean <= g["max"]
            assert mean == pytest.approx(true, rel=0.02), (period, i)
