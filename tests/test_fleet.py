"""A small fleet: a handful of real daemons into one Mosquitto and one
InfluxDB, through a broker restart and an InfluxDB outage (bench/fleet.py
runs the same with 50 daemons and reports the figures)."""

from __future__ import annotations

import os
import sys

import pytest

# Appended: bench/sinks.py must not hide src/sinks from the other tests.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))

from fleet import Fleet, FleetConfig  # noqa: E402


@pytest.mark.slow
def test_a_small_fleet_loses_nothing_through_server_restarts(tmp_path):
    config = FleetConfig(
        daemons=3,
        meters=2,
        warmup_s=2,
        between_s=1,
        outage_s=4,
        settle_timeout_s=60,
        speed=4,  # four times the real pulse rate, for more readings
        retry_max_s=2,
    )
    result = Fleet(config, tmp_path, log=lambda *_: None).run()
    assert result.failures == [], result.failures
    assert len(result.checks) == 8, result.checks
    f = result.figures
    assert f["mqtt_reconnect_s"]["n"] == 6  # every meter came back online
    assert f["influx_reconnect_s"]["n"] == 3  # every daemon wrote again
    assert f["readings"] > 6
    assert f["load"]["influx_points_per_meter_s"] > 0
    assert f["load"]["mqtt_messages_per_meter_s"] > 0
