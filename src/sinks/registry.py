"""Sink types by name. A new sink is one module and one line here.

Entries are "module:Class" strings so that a sink's module (and its
third-party library) is imported only when it is configured.
"""

from __future__ import annotations

from typing import Dict, Type

from plugins import load
from sinks.base import Sink

SINKS: Dict[str, str] = {
    "file": "sinks.file:FileSink",
    "influxdb": "sinks.influxdb:InfluxDBSink",
    "mqtt": "sinks.mqtt:MQTTSink",
    "librato": "sinks.librato:LibratoSink",
    "thingsboard": "sinks.thingsboard:ThingsBoardSink",
}


def sink_class(kind: str, where: str) -> Type[Sink]:
    """The class for a sink `type`, or a SettingsError naming the choices."""
    return load(SINKS, kind, f"{where}['type']", "sink type")
