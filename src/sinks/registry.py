"""Sink types by name. A new sink is one module and one line here.

Entries are "module:Class" strings so that a sink's module (and its
third-party library) is imported only when it is configured.
"""

from __future__ import annotations

import importlib
from typing import Dict, Type

from options import SettingsError
from sinks.base import Sink

SINKS: Dict[str, str] = {
    "file": "sinks.file:FileSink",
    "influxdb": "sinks.influxdb:InfluxDBSink",
    "mqtt": "sinks.mqtt:MQTTSink",
    "librato": "sinks.librato:LibratoSink",
}


def sink_class(kind: str, where: str) -> Type[Sink]:
    """The class for a sink `type`, or a SettingsError naming the choices."""
    target = SINKS.get(kind) if isinstance(kind, str) else None
    if target is None:
        choices = ", ".join(repr(k) for k in sorted(SINKS))
        raise SettingsError(
            f"{where}['type'] = {kind!r}: unknown sink type; expected one of {choices}"
        )
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
