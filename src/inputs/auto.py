"""backend 'auto' (the default): gpiod where it can run, else RPi.GPIO.

Chosen once, when the settings are read: `gpiod` when a GPIO character
device (/dev/gpiochip*) exists and the gpiod module imports (every Pi on a
current OS, the Pi 5 included), else `rpigpio`. `pin` is the BCM GPIO
number, which is the line number on the Pi's header chip, so it names the
same GPIO in both. Without `chip` the header chip is found by its label
(the Pi 5's is not always gpiochip0); off a Pi, a single chip is used.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from core.options import Option, SettingsError
from inputs.base import InputError

# The labels of the GPIO chips behind a Raspberry Pi's 40-pin header: Pi 5,
# Pi 4 and 400, Pi 1 to 3 and Zero.
HEADER_LABELS = ("pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835")
EXPORT_KEYS = ("direction_line", "direction_active", "export_line")


def _chip_number(path: str) -> int:
    match = re.search(r"(\d+)$", path)
    return int(match.group(1)) if match else -1


def gpio_chips() -> List[str]:
    """The GPIO character devices here, in number order."""
    return sorted(glob.glob("/dev/gpiochip*"), key=_chip_number)


def _label(gpiod: Any, path: str) -> Optional[str]:
    """A chip's label, or None when it cannot be opened (permission)."""
    try:
        with gpiod.Chip(path) as chip:
            return chip.get_info().label
    except OSError:
        return None


def header_chip(gpiod: Any, chips: List[str]) -> Tuple[str, str]:
    """The chip to use and why: the Pi header's by label, else the only one."""
    labels = {path: _label(gpiod, path) for path in chips}
    for path, label in labels.items():
        if label in HEADER_LABELS:
            return path, f"label {label!r}: the Raspberry Pi's GPIO header"
    if len(chips) == 1:
        path = chips[0]
        return path, f"label {labels[path]!r}: the only GPIO chip"
    unreadable = [path for path, label in labels.items() if label is None]
    if unreadable:  # starting will name the permission problem and its fix
        return unreadable[0], "its label could not be read (no permission)"
    found = ", ".join(f"{os.path.basename(p)} {labels[p]!r}" for p in chips)
    raise SettingsError(
        f"INPUT: backend 'auto' found several GPIO chips ({found}) and none is "
        "a Raspberry Pi's header; set INPUT['chip'] to the one the sensor is on"
    )


class AutoInput:
    """Not a backend itself: resolve() picks one and its options."""

    OPTIONS = {
        "backend": Option("str"),
        "pin": Option("int", 24, minimum=0, maximum=1023),
        "edge": Option("str", "falling", choices=("falling", "rising")),
        "pull": Option("str", "up", choices=("up", "down", "off")),
        "chip": Option("str", None, nullable=True),
        # Only for gpiod: the kernel's debounce (see inputs/libgpiod.py).
        "filter_ms": Option("number", None, nullable=True, minimum=0.0, maximum=1000),
        # Export, where gpiod is chosen (see the gpiod backend).
        "direction_line": Option("int", None, nullable=True, minimum=0, maximum=1023),
        "direction_active": Option("str", "high", choices=("high", "low")),
        "export_line": Option("int", None, nullable=True, minimum=0, maximum=1023),
    }

    @classmethod
    def resolve(cls, values: Dict[str, Any]) -> Tuple[str, Dict[str, Any], str]:
        """(backend name, its settings, why it was chosen)."""
        from inputs.libgpiod import chip_path, import_gpiod

        chips = gpio_chips()
        gpiod: Any = None
        missing = ""
        try:
            gpiod = import_gpiod()
        except InputError:
            missing = "the gpiod module is not installed"
        if values["chip"] is not None and gpiod is None:
            raise SettingsError(
                f"INPUT['chip'] = {values['chip']!r}: a chip is read with the "
                "gpiod module, which is not installed; run 'pip install gpiod' "
                "(on Raspberry Pi OS: sudo apt install python3-libgpiod)"
            )
        common = {"edge": values["edge"], "pull": values["pull"]}
        if gpiod is not None and (chips or values["chip"] is not None):
            if values["chip"] is not None:
                path = chip_path(values["chip"])
                how = f"INPUT['chip'] = {values['chip']!r}"
            else:
                path, how = header_chip(gpiod, chips)
            options = {"backend": "gpiod", "chip": path, "line": values["pin"]}
            if values["filter_ms"] is not None:
                options["filter_ms"] = values["filter_ms"]
            for key in EXPORT_KEYS:
                options[key] = values[key]
            why = (
                f"auto: gpiod, the GPIO character device {path} ({how}), "
                f"line {values['pin']}"
            )
            return "gpiod", {**options, **common}, why
        for key in ("direction_line", "export_line"):
            if values[key] is not None:
                raise SettingsError(
                    f"INPUT[{key!r}] = {values[key]!r}: export inputs are read "
                    "with gpiod, which cannot run here ("
                    + (missing or "no GPIO character device")
                    + "); install gpiod or leave it out"
                )
        reasons = [missing] if missing else []
        if not chips:
            reasons.insert(0, "there is no GPIO character device (/dev/gpiochip*)")
        reason = " and ".join(reasons)
        options = {"backend": "rpigpio", "pin": values["pin"], "numbering": "bcm"}
        why = f"auto: RPi.GPIO pin {values['pin']} (BCM), because {reason}"
        return "rpigpio", {**options, **common}, why
