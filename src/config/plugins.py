"""Loading an input backend or sink class by the name the settings give.

The registries (`inputs/registry.py`, `sinks/registry.py`) map names to
"module:Class" strings, so a module (and the third-party library it needs) is
imported only when the settings name it.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Type

from core.options import SettingsError, show
from inputs import registry as inputs_registry
from inputs.base import InputBackend
from sinks import registry as sinks_registry
from sinks.base import Sink


def load(table: Dict[str, str], name: Any, setting: str, what: str) -> Any:
    """The class registered under `name`, or a SettingsError for `setting`
    naming the choices."""
    target = table.get(name) if isinstance(name, str) else None
    if target is None:
        choices = ", ".join(repr(k) for k in table)
        raise SettingsError(
            f"{setting} = {show(name)}: unknown {what}; expected one of {choices}"
        )
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def backend_class(name: str, where: str) -> Type[InputBackend]:
    """The class for an input `backend`, or a SettingsError naming the choices."""
    return load(inputs_registry.BACKENDS, name, f"{where}['backend']", "input backend")


def sink_class(kind: str, where: str) -> Type[Sink]:
    """The class for a sink `type`, or a SettingsError naming the choices."""
    return load(sinks_registry.SINKS, kind, f"{where}['type']", "sink type")
