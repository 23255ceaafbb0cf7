"""Sink types by name. A new sink is one module and one line here.

Entries are "module:Class" strings so that a sink's module (and its
third-party library) is imported only when it is configured
(config/plugins.py).
"""

from __future__ import annotations

from typing import Dict

SINKS: Dict[str, str] = {
    "file": "sinks.file:FileSink",
    "influxdb": "sinks.influxdb:InfluxDBSink",
    "mqtt": "sinks.mqtt:MQTTSink",
    "librato": "sinks.librato:LibratoSink",
    "thingsboard": "sinks.thingsboard:ThingsBoardSink",
}
