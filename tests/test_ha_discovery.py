"""Home Assistant's own MQTT sensor schema judges the discovery payloads for
import, export, gas and water.

The `homeassistant` package (2024.3.3, the newest release that installs on
Python 3.11) is installed into a throwaway virtualenv by tests/ha_venv.py
and runs tests/ha_discovery_check.py, which applies the MQTT
sensor platform's DISCOVERY_SCHEMA and the sensor's rules for a device
class (its units, its state classes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ha_venv import ha_python

from sinks.mqtt import discovery_configs

CHECK = Path(__file__).with_name("ha_discovery_check.py")


def judge(payloads: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ha_python()), str(CHECK)],
        input=json.dumps(payloads),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def payloads():
    out = {}
    out.update(
        discovery_configs("grid", "power", "homeassistant", "1.0", "electricity", True)
    )
    out.update(discovery_configs("gas", "power", "homeassistant", "1.0", "gas"))
    out.update(discovery_configs("water", "power", "homeassistant", "1.0", "water"))
    return out


def test_home_assistant_takes_import_export_gas_and_water(payloads):
    assert len(payloads) == 7  # power, energy, export; flow, gas; flow, water
    res = judge(payloads)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 7 and all(line.endswith(": ok") for line in lines), lines
    export = json.loads(payloads["homeassistant/sensor/power_grid/export/config"])
    assert export["unique_id"] == "power_grid_export"


def test_home_assistant_refuses_what_the_energy_dashboard_would(payloads):
    """The check can fail: "m3" for gas, a measurement for energy."""
    gas = json.loads(payloads["homeassistant/sensor/power_gas/volume/config"])
    energy = json.loads(payloads["homeassistant/sensor/power_grid/energy/config"])
    wrong = {
        "gas-m3": json.dumps({**gas, "unit_of_measurement": "m3"}),
        "energy-measurement": json.dumps({**energy, "state_class": "measurement"}),
        "no-state-topic": json.dumps(
            {k: v for k, v in gas.items() if k != "state_topic"}
        ),
    }
    res = judge(wrong)
    assert res.returncode == 1
    verdicts = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    assert "not one of" in verdicts["gas-m3"]
    assert "not allowed" in verdicts["energy-measurement"]
    assert "refused by DISCOVERY_SCHEMA" in verdicts["no-state-topic"]
