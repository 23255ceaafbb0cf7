"""Input backends by name. A new backend is one module and one line here.

Entries are "module:Class" strings; a backend's module is imported only when
it is chosen, and imports its GPIO library only when constructed.
"""

from __future__ import annotations

from typing import Dict, Type

from inputs.base import InputBackend
from plugins import load

BACKENDS: Dict[str, str] = {
    "auto": "inputs.auto:AutoInput",  # picks gpiod or rpigpio (not a backend)
    "rpigpio": "inputs.rpigpio:RpiGpioInput",
    "gpiod": "inputs.libgpiod:GpiodInput",
    "simulated": "inputs.simulated:SimulatedInput",
    "replay": "inputs.replay:ReplayInput",
}


def backend_class(name: str, where: str) -> Type[InputBackend]:
    """The class for an input `backend`, or a SettingsError naming the choices."""
    return load(BACKENDS, name, f"{where}['backend']", "input backend")
