"""Input backends by name. A new backend is one module and one line here.

Entries are "module:Class" strings; a backend's module is imported only when
it is chosen (config/plugins.py), and imports its GPIO library only when
constructed.
"""

from __future__ import annotations

from typing import Dict

BACKENDS: Dict[str, str] = {
    "auto": "inputs.auto:AutoInput",  # picks gpiod or rpigpio (not a backend)
    "rpigpio": "inputs.rpigpio:RpiGpioInput",
    "gpiod": "inputs.libgpiod:GpiodInput",
    "simulated": "inputs.simulated:SimulatedInput",
    "replay": "inputs.replay:ReplayInput",
    "sml": "inputs.sml:SmlInput",
    "d0": "inputs.d0:D0Input",
    "p1": "inputs.p1:P1Input",
}
