"""Input backends by name. A new backend is one module and one line here.

Entries are "module:Class" strings; a backend's module is imported only when
it is chosen, and imports its GPIO library only when constructed.
"""

from __future__ import annotations

import importlib
from typing import Dict, Type

from inputs.base import InputBackend
from options import SettingsError

BACKENDS: Dict[str, str] = {
    "rpigpio": "inputs.rpigpio:RpiGpioInput",
    "gpiod": "inputs.libgpiod:GpiodInput",
    "simulated": "inputs.simulated:SimulatedInput",
    "replay": "inputs.replay:ReplayInput",
}


def backend_class(name: str, where: str) -> Type[InputBackend]:
    """The class for an input `backend`, or a SettingsError naming the choices."""
    target = BACKENDS.get(name) if isinstance(name, str) else None
    if target is None:
        choices = ", ".join(repr(k) for k in BACKENDS)
        raise SettingsError(
            f"{where}['backend'] = {name!r}: unknown input backend; "
            f"expected one of {choices}"
        )
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
