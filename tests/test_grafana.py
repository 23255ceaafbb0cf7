"""The Grafana dashboard's queries against a real InfluxDB filled by the
daemon, with Grafana's macros expanded the way Grafana expands them."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from conftest import ROOT, Workspace, write_replay
from loadmodel import bucket_means, pulse_times, varying_load
from servers import Influx

from core.meter import Reading
from sinks.influxdb import InfluxDBSink

DASHBOARD = ROOT / "grafana" / "power-dashboard.json"
DAY0 = 1_714_521_600  # 2024-05-01 00:00 UTC
PPK = 1000
LAB_S = 86400  # a day of a varying load on meter "lab" from DAY0


def regex_value(values):
    """Grafana's InfluxDB regex interpolation of a (multi-)value variable."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}/-])", r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(query: str, start_ms: int, end_ms: int, meters, interval="5m") -> str:
    query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    query = query.replace("${__from}", str(start_ms)).replace("${__to}", str(end_ms))
    query = query.replace("$__interval", interval)
    query = query.replace("$meter", regex_value(meters))
    query = query.replace("$tz", "Etc/UTC")
    assert "$" not in query.replace("$/", "/"), query
    return query


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """Three days of two meters' pulses written by the daemon, and a day of
    a varying load on a third."""
    tmp = tmp_path_factory.mktemp("grafana")
    server = Influx(tmp / "influx")
    server.start()
    watts = {"house": [800, 1500, 400], "garage": [200, 200, 3000]}
    expected = {}
    pulses = {"lab": pulse_times(varying_load(LAB_S), DAY0, PPK)}
    meters = [
        {
            "name": "lab",
            "pulses_per_kwh": PPK,
            "input": {
                "backend": "replay",
                "path": str(write_replay(tmp / "lab.txt", pulses["lab"])),
                "speed": 0,
            },
        }
    ]
    for name, per_day in watts.items():
        times = []
        for day, w in enumerate(per_day):
            step = 3_600_000 / (PPK * w)
            n = int(86400 / step)
            times += [DAY0 + day * 86400 + step * (i + 0.5) for i in range(n)]
            expected[(name, day)] = n / PPK
        pulses[name] = times
        replay = write_replay(tmp / f"{name}.txt", times)
        meters.append(
            {
                "name": name,
                "pulses_per_kwh": PPK,
                "input": {"backend": "replay", "path": str(replay), "speed": 0},
            }
        )
    # A gas meter counted by pulses: 0.01 m³ a pulse, 0.5 m³/h.
    gas = [DAY0 + 72.0 * (i + 0.5) for i in range(3 * 1200)]
    meters.append(
        {
            "name": "boiler",
            "kind": "gas",
            "pulses_per_m3": 100,
            "input": {
                "backend": "replay",
                "path": str(write_replay(tmp / "boiler.txt", gas)),
                "speed": 0,
            },
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
    # A meter with export (a register meter's readings, hourly for three
    # days, 1 kWh of export an hour), written by the sink itself.
    sink = InfluxDBSink(
        "influxdb",
        {
            **{k: o.default for k, o in InfluxDBSink.OPTIONS.items()},
            "port": server.port,
        },
        logging.getLogger("test"),
    )
    sink.open()
    sink.write(
        [
            Reading(
                DAY0 + 3600.0 * h,
                "solar",
                1000 * h,
                float(h),
                -500.0,
                3600.0,
                False,
                float(h),
            )
            for h in range(1, 72)
        ]
    )
    sink.close()
    yield server, expected, pulses
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
    assert {"Export per day", "Gas and water per day"} <= titles


def test_every_panel_query_runs(filled):
    server = filled[0]
    start, end = DAY0 * 1000, (DAY0 + 3 * 86400) * 1000 - 1
    for panel in panels():
        for target in panel["targets"]:
            meters = ["house", "garage", "boiler", "solar"]
            q = expand(target["query"], start, end, meters)
            result = server.query(q)["results"][0]
            assert "error" not in result, (panel["title"], q, result)
            assert result.get("series"), (panel["title"], q)


def test_meter_variable_lists_the_meters(filled):
    server = filled[0]
    dash = json.loads(DASHBOARD.read_text())
    variable = next(v for v in dash["templating"]["list"] if v["name"] == "meter")
    rows = server.series(variable["query"])
    names = sorted(r["value"] for r in rows)
    assert names == ["boiler", "garage", "house", "lab", "solar"]


def test_daily_energy_matches_the_meters_count(filled):
    server, expected, _ = filled
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


def panel_query(title):
    panel = next(p for p in panels() if p["title"] == title)
    return panel["targets"][0]["query"]


def bucket_errors(server, query, bucket_s, span_s, interval):
    """The error of each bucket of the query's answer for meter "lab"
    against the true mean power, with the truth and one pulse per bucket."""
    truth = bucket_means(varying_load(LAB_S)[:span_s], bucket_s)
    q = expand(query, DAY0 * 1000, (DAY0 + span_s) * 1000 - 1, ["lab"], interval)
    rows = server.series(q)
    got = {(r["time"] // 1000 - DAY0) // bucket_s: r for r in rows}
    # The first bucket has no earlier reading to start from.
    assert set(range(1, len(truth))) <= set(got), sorted(got)
    value = [k for k in rows[0] if k not in ("time", "meter")][0]
    pulse_w = 3600.0 * 1000.0 / PPK / bucket_s  # one pulse per bucket
    return [
        (abs(got[i][value] - truth[i]), truth[i], pulse_w) for i in range(1, len(truth))
    ]


def within_a_few_percent(errors) -> bool:
    """2 %, plus the one pulse a bucket's count may be off by at its edges."""
    return all(err <= 0.02 * true + pulse_w for err, true, pulse_w in errors)


@pytest.mark.parametrize(
    "bucket_s, span_s, interval",
    [(60, 3 * 3600, "1m"), (600, LAB_S, "10m"), (3600, LAB_S, "1h")],
)
def test_power_panel_is_the_time_weighted_mean_per_bucket(
    filled, bucket_s, span_s, interval
):
    errors = bucket_errors(filled[0], panel_query("Power"), bucket_s, span_s, interval)
    assert within_a_few_percent(errors)
    # Measured: at most 2.7 % (1 min), 0.23 % (10 min), 0.03 % (1 h).
    assert max(err / true for err, true, _ in errors) < 0.04


def test_heat_map_is_the_time_weighted_mean_per_quarter_hour(filled):
    errors = bucket_errors(
        filled[0], panel_query("Power through the day"), 900, LAB_S, "unused"
    )
    assert within_a_few_percent(errors)
    assert max(err / true for err, true, _ in errors) < 0.01


def test_a_plain_mean_of_readings_fails_the_same_check(filled):
    """The check can fail: the old query weighted busy minutes by their
    pulse count (here up to 18 % off)."""
    old = (
        'SELECT mean("power_w") FROM "power" WHERE "meter" =~ /^$meter$/ AND '
        '$timeFilter GROUP BY time($__interval), "meter" fill(null)'
    )
    errors = bucket_errors(filled[0], old, 600, LAB_S, "10m")
    assert not within_a_few_percent(errors)


def test_power_panel_shows_a_steady_load(filled):
    server = filled[0]
    day1 = DAY0 + 86400
    q = expand(
        panel_query("Power"),
        (day1 + 3600) * 1000,
        (day1 + 7200) * 1000 - 1,
        ["house"],
        interval="1h",
    )
    rows = server.series(q)
    # InfluxDB reads the interval before the range for the first derivative.
    assert [r["time"] for r in rows] == [(day1 + 3600) * 1000]
    assert rows[0]["power_w"] == pytest.approx(1500, abs=1.0)


@pytest.mark.parametrize("meter", ["house", "lab"])
def test_energy_today_counts_from_midnight_in_the_dashboards_zone(filled, meter):
    """Grafana sets the panel's range to today in the dashboard's time zone
    (here UTC+2, so midnight is 22:00 UTC): every pulse since, none before."""
    server, _, pulses = filled
    midnight = DAY0 + 86400 - 7200
    now = midnight + 5 * 3600 + 17.25
    q = expand(
        panel_query("Energy today"), int(midnight * 1000), int(now * 1000), [meter]
    )
    rows = server.series(q)
    counted = sum(1 for t in pulses[meter] if midnight <= t <= now)
    assert rows[-1]["energy"] == pytest.approx(counted / PPK, abs=1e-9)


def test_export_and_gas_per_day(filled):
    server = filled[0]
    for title, meter, per_day in (
        ("Export per day", "solar", 24.0),
        ("Gas and water per day", "boiler", 12.0),  # 0.5 m³/h
    ):
        panel = next(p for p in panels() if p["title"] == title)
        q = expand(
            panel["targets"][0]["query"],
            DAY0 * 1000,
            (DAY0 + 3 * 86400) * 1000 - 1,
            [meter],
        )
        (series,) = server.query(q)["results"][0]["series"]
        values = [v for _, v in series["values"] if v is not None]
        assert values[1] == pytest.approx(per_day, rel=0.01), (title, values)
