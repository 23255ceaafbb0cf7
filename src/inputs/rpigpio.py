"""RPi.GPIO backend: the original monitor's input, on Raspberry Pi 1 to 4.

RPi.GPIO calls our callback from its own event thread for each detected
edge; the callback reads the two clocks and enqueues, nothing more. The
library is imported only when this backend is chosen, so everything else
runs off a Pi.
"""

from __future__ import annotations

import time
from typing import Any, List

from inputs.base import Backlog, EdgeCallback, InputBackend, InputError, LedOutput
from options import Option

# The header's GPIOs: BCM 0-27; BOARD pins 1-40 (RPi.GPIO rejects the
# power and ground pins itself).
PIN_RANGE = {"bcm": (0, 27), "board": (1, 40)}

OFF_PI_HINT = (
    "RPi.GPIO works only on a Raspberry Pi 1 to 4 (for a Pi 5 see the manual's "
    "input backends, docs/inputs/index.rst; to try power without a meter use "
    "--simulate WATTS)"
)


def import_gpio() -> Any:
    """Import RPi.GPIO or raise InputError saying why and what to do."""
    try:
        import RPi.GPIO as GPIO  # noqa: N814
    except ImportError as exc:
        raise InputError(
            f"INPUT backend 'rpigpio' needs the RPi.GPIO module ({exc}). "
            f"Install it with 'pip install RPi.GPIO'; {OFF_PI_HINT}"
        ) from None
    except RuntimeError as exc:  # "This module can only be run on a Raspberry Pi!"
        raise InputError(f"RPi.GPIO cannot run here: {exc}; {OFF_PI_HINT}") from None
    return GPIO


class GpioLed(LedOutput):
    def __init__(self, gpio: Any, pin: int, log) -> None:
        super().__init__(pin, log)
        self.gpio = gpio
        gpio.setup(pin, gpio.OUT, initial=gpio.LOW)

    def set(self, on: bool) -> None:
        self.gpio.output(self.pin, self.gpio.HIGH if on else self.gpio.LOW)

    def close(self) -> None:
        self.gpio.output(self.pin, self.gpio.LOW)
        self.gpio.cleanup(self.pin)


class RpiGpioInput(InputBackend):
    OPTIONS = {
        "backend": Option("str"),
        "pin": Option("int", 24, minimum=0, maximum=40),
        "numbering": Option("str", "bcm", choices=("bcm", "board")),
        "edge": Option("str", "falling", choices=("falling", "rising")),
        "pull": Option("str", "up", choices=("up", "down", "off")),
    }

    @classmethod
    def preflight(cls, options: dict) -> None:
        low, high = PIN_RANGE[options["numbering"]]
        if not low <= options["pin"] <= high:
            raise InputError(
                f"INPUT['pin'] = {options['pin']!r}: expected {low} to {high} in "
                f"{options['numbering']!r} numbering"
            )
        import_gpio()

    def __init__(self, options, meter, log) -> None:
        super().__init__(options, meter, log)
        self.gpio = import_gpio()
        self.pin: int = options["pin"]
        self._set_mode()
        self._inputs: List[int] = []

    def _set_mode(self) -> None:
        GPIO = self.gpio  # noqa: N806 (the library's own name)
        mode = GPIO.BCM if self.options["numbering"] == "bcm" else GPIO.BOARD
        current = GPIO.getmode()
        if current is not None and current != mode:
            raise InputError(
                "every rpigpio input and LED must use the same 'numbering'; "
                f"INPUT['numbering'] = {self.options['numbering']!r} differs"
            )
        GPIO.setwarnings(False)
        GPIO.setmode(mode)

    def describe(self) -> str:
        return f"RPi.GPIO pin {self.pin} ({self.options['numbering']})"

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        GPIO = self.gpio  # noqa: N806 (the library's own name)
        pull = {"up": GPIO.PUD_UP, "down": GPIO.PUD_DOWN, "off": GPIO.PUD_OFF}
        edge = {"falling": GPIO.FALLING, "rising": GPIO.RISING}
        monotonic_ns, wall = time.monotonic_ns, time.time

        def callback(channel: int) -> None:
            # The pulse path: timestamp and hand off.
            on_edge(monotonic_ns(), wall())

        try:
            GPIO.setup(self.pin, GPIO.IN, pull_up_down=pull[self.options["pull"]])
            self._inputs.append(self.pin)
            kwargs = {"callback": callback}
            bounce = int(self.meter.debounce_ms)
            if bounce > 0:
                kwargs["bouncetime"] = bounce
            GPIO.add_event_detect(self.pin, edge[self.options["edge"]], **kwargs)
        except RuntimeError as exc:
            self.stop()
            raise InputError(
                f"cannot watch GPIO pin {self.pin}: {exc}. Is another program "
                "using it, and is this user in the 'gpio' group? On Raspberry "
                "Pi OS Bookworm (kernel 6.6 and later) RPi.GPIO 0.7 cannot "
                "detect edges: replace it with 'pip uninstall RPi.GPIO' then "
                "'pip install rpi-lgpio', or use INPUT['backend'] = 'gpiod'"
            ) from None
        except ValueError as exc:
            self.stop()
            raise InputError(f"GPIO pin {self.pin} cannot be used: {exc}") from None

    def led(self, pin: int) -> LedOutput:
        try:
            return GpioLed(self.gpio, pin, self.log)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"cannot drive LED on GPIO pin {pin}: {exc}") from None

    def stop(self) -> None:
        for pin in self._inputs:
            try:
                self.gpio.remove_event_detect(pin)
                self.gpio.cleanup(pin)
            except (RuntimeError, ValueError) as exc:
                self.log.debug("GPIO cleanup of pin %s: %s", pin, exc)
        self._inputs = []
