"""RPi.GPIO backend: the original monitor's input, on Raspberry Pi 1 to 4,
and through rpi-lgpio (the RPi.GPIO API on lgpio) on any Pi.

RPi.GPIO calls our callback from its own event thread for each detected
edge; the callback reads the two clocks and enqueues, nothing more. The
library is imported only when this backend is constructed, after any fork,
so everything else runs off a Pi.

rpi-lgpio differs from RPi.GPIO in three ways that matter here: importing
lgpio starts its notification thread and makes a FIFO in the working
directory (so it must not be imported before the daemon forks, and needs a
writable directory); lgpio raises `lgpio.error`, a plain Exception; and its
debounce reports an edge only once the level has held for the bouncetime,
which would swallow flashes shorter than it, so the meter's own debounce
is used instead.

Flash widths: through rpi-lgpio the backend watches both edges with the
kernel's timestamp and level, so the meter checks each flash's width.
RPi.GPIO proper reports the configured edge only (its callback carries no
level, and its bouncetime would swallow a flash's end): no width checks.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import tempfile
import time
from typing import Any, List, Tuple, Type

from core.meter import END, PULSE, START
from core.options import Option, show
from inputs.base import Backlog, EdgeCallback, InputBackend, InputError, LedOutput

# The header's GPIOs: BCM 0-27; BOARD pins 1-40 (RPi.GPIO rejects the
# power and ground pins itself).
PIN_RANGE = {"bcm": (0, 27), "board": (1, 40)}

OFF_PI_HINT = (
    "RPi.GPIO works only on a Raspberry Pi 1 to 4 (for a Pi 5 see the manual's "
    "input backends, docs/inputs/index.rst; to try power without a meter use "
    "--simulate WATTS)"
)
GROUP_HINT = (
    "add this user to the 'gpio' group ('sudo adduser $USER gpio', then log in again)"
)


def is_rpi_lgpio() -> bool:
    """Whether `RPi.GPIO` here is rpi-lgpio, found without importing it."""
    try:
        return importlib.util.find_spec("lgpio") is not None
    except (ImportError, ValueError):
        return False


def _import_rpi_gpio() -> Any:
    import RPi.GPIO as GPIO  # noqa: N814

    return GPIO


def _import_in_scratch_dir() -> Any:
    """Import rpi-lgpio where lgpio can make its notification FIFO, then
    remove the FIFO's name (both ends are open by then) and the directory."""
    scratch = tempfile.mkdtemp(prefix="power-lgpio-")
    here = os.getcwd()
    before = os.environ.get("LG_WD")
    os.environ["LG_WD"] = scratch
    try:
        os.chdir(scratch)
        return _import_rpi_gpio()
    finally:
        os.chdir(here)
        if before is None:
            del os.environ["LG_WD"]
        else:
            os.environ["LG_WD"] = before
        shutil.rmtree(scratch, ignore_errors=True)


def import_gpio() -> Any:
    """Import RPi.GPIO or raise InputError saying why and what to do."""
    try:
        return _import_in_scratch_dir() if is_rpi_lgpio() else _import_rpi_gpio()
    except ImportError as exc:
        raise InputError(
            f"INPUT backend 'rpigpio' needs the RPi.GPIO module ({exc}). "
            f"Install it with 'pip install RPi.GPIO'; {OFF_PI_HINT}"
        ) from None
    except RuntimeError as exc:  # "This module can only be run on a Raspberry Pi!"
        raise InputError(f"RPi.GPIO cannot run here: {exc}; {OFF_PI_HINT}") from None
    except Exception as exc:  # lgpio.error, or its FIFO could not be made
        raise InputError(
            f"RPi.GPIO (rpi-lgpio) cannot start: {type(exc).__name__}: {exc}"
        ) from None


def library_errors(gpio: Any) -> Tuple[Type[BaseException], ...]:
    """What the library raises for a refused request: RPi.GPIO raises
    RuntimeError and ValueError; rpi-lgpio also lets lgpio.error through."""
    lgpio = getattr(gpio, "lgpio", None)
    error = getattr(lgpio, "error", None)
    extra = (error,) if isinstance(error, type) else ()
    return (RuntimeError, ValueError, *extra)


def explain(exc: BaseException, what: str) -> str:
    """A library error as a message with its likely cause and the fix."""
    text = str(exc)
    low = text.lower()
    if "busy" in low:
        return (
            f"{what}: {text}: another program is using it ('gpioinfo' shows "
            "which); stop it or choose another pin"
        )
    if "gpiochip" in low or "can not open" in low:
        chips = glob.glob("/dev/gpiochip*")
        if not chips:
            cause = "there is no GPIO character device (/dev/gpiochip*) here"
        elif not all(os.access(c, os.R_OK | os.W_OK) for c in chips):
            cause = f"this user may not open the GPIO chips; {GROUP_HINT}"
        else:
            cause = (
                "the chip rpi-lgpio chose does not exist; list the chips with "
                "'gpiodetect' and set RPI_LGPIO_CHIP, or use the 'gpiod' backend"
            )
        return f"{what}: {text}: {cause}"
    if "bad gpio" in low or "not in chip" in low or "not permitted" in low:
        return (
            f"{what}: {text}: the chip has no such GPIO, or the kernel keeps it; "
            "check INPUT['pin'] ('gpioinfo' lists the lines)"
        )
    return f"{what}: {type(exc).__name__}: {text}"


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
                f"INPUT['pin'] = {show(options['pin'])}: expected {low} to {high} in "
                f"{options['numbering']!r} numbering"
            )
        if not is_rpi_lgpio():
            import_gpio()  # RPi.GPIO proper: harmless before a fork
            return
        # rpi-lgpio starts a thread on import, which a fork would lose:
        # only look for it here; it is imported after the fork.
        try:
            found = importlib.util.find_spec("RPi.GPIO") is not None
        except ImportError:
            found = False
        if not found:
            import_gpio()  # raises the usual "needs the RPi.GPIO module"

    def __init__(self, options, meter, log) -> None:
        super().__init__(options, meter, log)
        self.gpio = import_gpio()
        self.errors = library_errors(self.gpio)
        self.lgpio = is_rpi_lgpio() and getattr(self.gpio, "lgpio", None) is not None
        self.pin: int = options["pin"]
        self._inputs: List[int] = []
        self._callbacks: List[Any] = []  # lgpio callbacks (rpi-lgpio)
        try:
            self._set_mode()  # rpi-lgpio opens the GPIO chip here
        except self.errors as exc:
            raise InputError(explain(exc, "RPi.GPIO")) from None

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
        library = "RPi.GPIO (rpi-lgpio)" if self.lgpio else "RPi.GPIO"
        return f"{library} pin {self.pin} ({self.options['numbering']})"

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        GPIO = self.gpio  # noqa: N806 (the library's own name)
        pull = {"up": GPIO.PUD_UP, "down": GPIO.PUD_DOWN, "off": GPIO.PUD_OFF}
        edge = {"falling": GPIO.FALLING, "rising": GPIO.RISING}
        monotonic_ns, wall = time.monotonic_ns, time.time

        def callback(channel: int) -> None:
            # The pulse path: timestamp and hand off.
            on_edge(monotonic_ns(), wall(), PULSE)

        try:
            GPIO.setup(self.pin, GPIO.IN, pull_up_down=pull[self.options["pull"]])
            self._inputs.append(self.pin)
            kwargs = {"callback": callback}
            bounce = int(self.meter.debounce_ms)
            if bounce > 0 and not self.lgpio:
                kwargs["bouncetime"] = bounce
            stamped = self.lgpio and self._kernel_stamps(on_edge)
            watch = edge[self.options["edge"]]
            if stamped:
                del kwargs["callback"]  # lgpio's callback carries the time
                watch = GPIO.BOTH  # and the level: both ends of a flash
            GPIO.add_event_detect(self.pin, watch, **kwargs)
        except ValueError as exc:
            self.stop()
            raise InputError(f"GPIO pin {self.pin} cannot be used: {exc}") from None
        except RuntimeError as exc:
            self.stop()
            if self.lgpio:
                raise InputError(explain(exc, f"GPIO pin {self.pin}")) from None
            raise InputError(
                f"cannot watch GPIO pin {self.pin}: {exc}. Is another program "
                "using it, and is this user in the 'gpio' group? On Raspberry "
                "Pi OS Bookworm (kernel 6.6 and later) RPi.GPIO 0.7 cannot "
                "detect edges: replace it with 'pip uninstall RPi.GPIO' then "
                "'pip install rpi-lgpio', or use INPUT['backend'] = 'gpiod'"
            ) from None
        except self.errors as exc:  # lgpio.error
            self.stop()
            raise InputError(explain(exc, f"GPIO pin {self.pin}")) from None

    def _kernel_stamps(self, on_edge: EdgeCallback) -> bool:
        """With rpi-lgpio: take each edge's kernel timestamp from lgpio's
        own callback (RPi.GPIO's callback API drops it), so a late Python
        thread cannot make a contact bounce look like a pulse. Needs
        rpi-lgpio's chip handle; False (callback stamps) if it has none."""
        GPIO = self.gpio  # noqa: N806 (the library's own name)
        lgpio = GPIO.lgpio
        handle = getattr(GPIO, "_chip", None)
        to_gpio = getattr(GPIO, "_to_gpio", None)
        if not isinstance(handle, int) or to_gpio is None:
            return False
        monotonic_ns, wall_ns = time.monotonic_ns, time.time_ns
        start_level = 0 if self.options["edge"] == "falling" else 1

        def stamped(chip: int, gpio: int, level: int, tick: int) -> None:
            # The pulse path: convert the kernel's time and hand off.
            if level > 1:  # lgpio's watchdog, not an edge
                return
            kind = START if level == start_level else END
            now_mono, now_wall = monotonic_ns(), wall_ns()
            if abs(now_wall - tick) < abs(now_mono - tick):  # a wall-clock tick
                on_edge(now_mono - (now_wall - tick), tick / 1e9, kind)
            else:
                on_edge(tick, (now_wall - (now_mono - tick)) / 1e9, kind)

        self._callbacks.append(
            lgpio.callback(handle, to_gpio(self.pin), lgpio.BOTH_EDGES, stamped)
        )
        return True

    def led(self, pin: int) -> LedOutput:
        try:
            return GpioLed(self.gpio, pin, self.log)
        except self.errors as exc:
            what = f"cannot drive LED on GPIO pin {pin}"
            if self.lgpio:
                raise InputError(explain(exc, what)) from None
            raise InputError(f"{what}: {exc}") from None

    def stop(self) -> None:
        for watcher in self._callbacks:
            watcher.cancel()
        self._callbacks = []
        for pin in self._inputs:
            try:
                self.gpio.remove_event_detect(pin)
                self.gpio.cleanup(pin)
            except self.errors as exc:
                self.log.debug("GPIO cleanup of pin %s: %s", pin, exc)
        self._inputs = []
