"""The Grafana dashboard's queries against a real InfluxDB filled by the
daemon, with Grafana's macros expanded the way Grafana expands them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, Workspace, write_replay
from servers import Influx

DASHBOARD = ROOT / "grafana" / "power-dashboard.json"
DAY0 = 1_714_521_600  # 2024-05-01 00:00 UTC
PPK = 1000


def regex_value(values):
    """Grafana's InfluxDB regex interpolation of a (multi-)value variable."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}/-])", r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(query: str, start_ms: int, end_ms: int, meters, interval="5m") -> str:
    query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    query = query.replace("$__interval", interval)
    query = query.replace("$meter", regex_value(meters))
    query = query.replace("$tz", "Etc/UTC")
    assert "$" not in query.replace("$/", "/"), query
    return query


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """Three days of two meters' pulses written by the daemon."""
    tmp = tmp_path_factory.mktemp("grafana")
    server = Influx(tmp / "influx")
    server.start()
    watts = {"house": [800, 1500, 400], "garage": [200, 200, 3000]}
    expected = {}
    meters = []
    for name, per_day in watts.items():
        times = []
        for day, w in enumerate(per_day):
            step = 3_600_000 / (PPK * w)
            n = int(86400 / step)
            times += [DAY0 + day * 86400 + step * (i + 0.5) for i in range(n)]
            expected[(name, day)] = n / PPK
        replay = write_replay(tmp / f"{name}.txt", times)
        meters.append(
            {
                "name": name,
                "pulses_per_kwh": PPK,
                "input": {"backend": "replay", "path": str(replay), "speed": 0},
            }
        )
    ws = Workspace(tmp)
    ws.write(
        METERS=meters,
        SINKS=[{"type": "influxdb", "host": "127.0.0.1", "port": server.port}],
        DRAIN_TIMEOUT_S=120,
    )
    res = ws.power("--nodaemon", timeout=300)
    assert res.returncode == 0, res.stderr
    yield server, expected
    server.stop()


def panels():
    return json.loads(Path(DASHBOARD).read_text())["panels"]


def test_dashboard_is_importable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["__inputs"][0]["pluginId"] == "influxdb"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert set(variables) == {"meter", "tz"}
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${DS_INFLUXDB}"
        for target in panel["targets"]:
            assert target["rawQuery"] is True
            assert target["query"].startswith("SELECT")
    titles = {p["title"] for p in dash["panels"]}
    assert {"Power", "Energy per day", "Energy today"} <= titles


def test_every_panel_query_runs(filled):
    server, _ = filled
    start, end = DAY0 * 1000, (DAY0 + 3 * 86400) * 1000 - 1
    for panel in panels():
        for target in panel["targets"]:
            q = expand(target["query"], start, end, ["house", "garage"])
            result = server.query(q)["results"][0]
            assert "error" not in result, (panel["title"], q, result)
            assert result.get("series"), (panel["title"], q)


def test_meter_variable_lists_the_meters(filled):
    server, _ = filled
    dash = json.loads(DASHBOARD.read_text())
    variable = next(v for v in dash["templating"]["list"] if v["name"] == "meter")
    rows = server.series(variable["query"])
    assert sorted(r["value"] for r in rows) == ["garage", "house"]


def test_daily_energy_matches_the_meters_count(filled):
    server, expected = filled
    panel = next(p for p in panels() if p["title"] == "Energy per day")
    # From the day before, so the first day has a previous day to subtract.
    start, end = (DAY0 - 86400) * 1000, (DAY0 + 3 * 86400) * 1000 - 1
    for meter in ("house", "garage"):
        q = expand(panel["targets"][0]["query"], start, end, [meter])
        rows = server.series(q)
        by_day = {(r["time"] // 1000 - DAY0) // 86400: r["energy"] for r in rows}
        # Day 0 has no earlier reading to subtract from; days 1 and 2 are exact.
        for day in (1, 2):
            assert by_day[day] == pytest.approx(expected[(meter, day)], abs=1e-6)


def test_power_panel_shows_the_replayed_load(filled):
    server, _ = filled
    panel = next(p for p in panels() if p["title"] == "Power")
    day1 = DAY0 + 86400
    q = expand(
        panel["targets"][0]["query"],
        (day1 + 3600) * 1000,
        (day1 + 7200) * 1000 - 1,
        ["house"],
        interval="1h",
    )
    rows = server.series(q)
    assert len(rows) == 1 and rows[0]["mean"] == pytest.approx(1500, rel=1e-3)
