"""Run by Home Assistant's own Python (a throwaway virtualenv with the
`homeassistant` package): check MQTT discovery payloads of sensors as Home
Assistant checks them.

Reads a JSON object {topic: payload} on stdin; for each payload: the MQTT
sensor platform's DISCOVERY_SCHEMA, then what the sensor entity itself
demands of a device class (a unit it knows for that class, a state class
it allows: the Energy dashboard takes only those). Prints one line per
topic, "ok" or the problem, and exits 1 if any payload is refused.
"""

from __future__ import annotations

import json
import sys


def check(payload: dict) -> str:
    import voluptuous as vol
    from homeassistant.components.mqtt.sensor import DISCOVERY_SCHEMA
    from homeassistant.components.sensor.const import (
        DEVICE_CLASS_STATE_CLASSES,
        DEVICE_CLASS_UNITS,
        SensorDeviceClass,
        SensorStateClass,
    )

    try:
        config = DISCOVERY_SCHEMA(payload)
    except vol.Invalid as exc:
        return f"refused by DISCOVERY_SCHEMA: {exc}"
    device_class = config.get("device_class")
    if device_class is None:
        return "ok"
    cls = SensorDeviceClass(device_class)
    unit = config.get("unit_of_measurement")
    units = DEVICE_CLASS_UNITS.get(cls)
    if units is not None and unit not in units:
        return f"unit {unit!r} is not one of {sorted(map(str, units))} for {cls}"
    state_class = config.get("state_class")
    allowed = DEVICE_CLASS_STATE_CLASSES.get(cls)
    if state_class is not None and allowed is not None:
        if SensorStateClass(state_class) not in allowed:
            return f"state_class {state_class!r} not allowed for {cls}"
    return "ok"


def main() -> int:
    payloads = json.load(sys.stdin)
    bad = 0
    for topic, payload in payloads.items():
        verdict = check(json.loads(payload))
        print(f"{topic}: {verdict}")
        bad += verdict != "ok"
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
