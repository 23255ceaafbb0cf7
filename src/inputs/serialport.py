"""What the register inputs (sml, d0, p1) share: the serial port and its
reading thread.

A read head (or a P1 cable) on a serial port is read by one thread: it
reads what comes, hands the bytes to the protocol's parser and each frame
the parser finds to the monitor as it arrived (a queue put, stamped with
the time the frame's last bytes were read). Nothing there blocks the
monitor. A frame that could not be used (a CRC error, a cut or garbage
frame) is handed on as a BadFrame with its reason, so the meter counts it
and the page can say why.

The cable may be pulled at any time (the read fails with EIO, or the device
goes away): the port is closed and opened again with a growing pause, with
one log line when the trouble starts and one when the frames are back. A
port that does not exist or cannot be read at start is a setting to fix
(preflight: exit 2 with one line saying what to do).
"""

from __future__ import annotations

import errno
import os
import termios
import threading
import time
from typing import Callable, ClassVar, Dict, List, Optional

from core.meter import MeterConfig
from core.options import Option
from core.regmeter import BadFrame, RegisterFrame
from inputs.base import Backlog, EdgeCallback, InputBackend, InputError

READ_TIMEOUT_S = 0.2  # a read returns at least this often: a stop is seen
REOPEN_FIRST_S = 1.0
REOPEN_MAX_S = 30.0
CHUNK = 512

FRAMINGS = ("8N1", "7E1", "7N1", "8E1")


def _check_device(value: str) -> Optional[str]:
    return None if value.startswith("/") else "expected a device path like /dev/ttyUSB0"


def serial_options(baud: int, framing: str) -> Dict[str, Option]:
    """The keys every register input has, with its protocol's defaults."""
    return {
        "backend": Option("str"),
        "device": Option("str", "/dev/ttyUSB0", check=_check_device),
        "baud": Option(
            "int",
            baud,
            choices=(300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200),
        ),
        "framing": Option("str", framing, choices=FRAMINGS),
        # A reading at most this often (the newest good frame); frames in
        # between are checked and counted, not journaled.
        "every_s": Option("number", 10.0, minimum=0.0, maximum=3600.0),
    }


class Observer:
    """What `power.py watch` is told of each frame (the reading thread
    calls it; it must not block)."""

    def frame(self, values: List[str], frame: Optional[RegisterFrame]) -> None: ...

    def bad(self, why: str) -> None: ...


class Parser:
    """A protocol's parser: bytes in, frames out (per protocol module)."""

    def feed(self, data: bytes) -> List[tuple]:
        """The frames completed by `data`: (RegisterFrame or None, the
        OBIS values as text, why it is bad or None)."""
        raise NotImplementedError


class SerialInput(InputBackend):
    """Base of the register inputs: the port, its thread and reopening."""

    OPTIONS: ClassVar[Dict[str, Option]] = serial_options(9600, "8N1")
    REGISTER: ClassVar[bool] = True
    PROTOCOL: ClassVar[str] = "serial"

    def __init__(self, options: dict, meter: MeterConfig, log) -> None:
        super().__init__(options, meter, log)
        self.device: str = options["device"]
        self.every_s = float(options["every_s"])
        self.observer: Optional[Observer] = None
        self.bad_frames = 0
        self.frames = 0
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._port = None
        self._on_edge: Optional[EdgeCallback] = None
        self._followers: Dict[str, EdgeCallback] = {}
        self.current: Optional[Parser] = None  # the parser of the open port
        self._got = False  # a good frame since the port was opened

    @classmethod
    def preflight(cls, options: dict) -> None:
        """The port must exist and be readable and writable by this user."""
        check_port(options["device"])
        try:
            import serial  # noqa: F401
        except ImportError:
            raise InputError(
                "INPUT backend "
                f"{options['backend']!r} needs pyserial: pip install -r "
                "src/requirements.txt (or make venv)"
            ) from None

    def describe(self) -> str:
        o = self.options
        return f"{self.PROTOCOL} on {self.device} at {o['baud']} {o['framing']}"

    def attach(self, meter: str, on_edge: EdgeCallback) -> None:
        """The callback of another meter this input feeds."""
        self._followers[meter] = on_edge

    def parser(self) -> Parser:
        raise NotImplementedError

    # The port ----------------------------------------------------------------

    def open_port(self, baud: Optional[int] = None):
        import serial

        framing = self.options["framing"]
        parity = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN}[framing[1]]
        return serial.Serial(
            self.device,
            baudrate=baud or self.options["baud"],
            bytesize=int(framing[0]),
            parity=parity,
            stopbits=int(framing[2]),
            timeout=READ_TIMEOUT_S,
            exclusive=True,
        )

    def session(self, port, handle: Callable[[bytes, int, float], None]) -> None:
        """Read the open port until it fails or power stops (a protocol
        that must ask for its frames overrides it)."""
        while not self._stopping.is_set():
            data = port.read(CHUNK)
            if data:
                handle(data, time.monotonic_ns(), time.time())

    # The thread --------------------------------------------------------------

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        self._on_edge = on_edge
        self._thread = threading.Thread(
            target=self._run, name=f"{self.PROTOCOL}-{self.meter.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        import serial

        pause = REOPEN_FIRST_S
        failing: Optional[str] = None
        while not self._stopping.is_set():
            self.current = self.parser()
            try:
                port = self.open_port()
            except (OSError, serial.SerialException, termios.error) as exc:
                failing = self._trouble(failing, f"cannot open it: {_why(exc)}")
                if self._stopping.wait(pause):
                    return
                pause = min(pause * 2, REOPEN_MAX_S)
                continue
            self._port = port
            self._got = False
            try:
                if failing is not None:
                    self.log.info("%s: port open again", self.describe())
                    failing = None
                self.session(port, self.handle)
            except (OSError, serial.SerialException, termios.error) as exc:
                failing = self._trouble(failing, f"read failed: {_why(exc)}")
            except Exception as exc:  # a parser's bug must not end the input
                failing = self._trouble(
                    failing, f"{type(exc).__name__}: {exc} (a frame it cannot parse)"
                )
            finally:
                self._port = None
                try:
                    port.close()
                except Exception:
                    pass
            if self._got:
                pause = REOPEN_FIRST_S
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, REOPEN_MAX_S)

    def _trouble(self, failing: Optional[str], why: str) -> str:
        """Log the first failure of a streak, once."""
        if failing is None:
            self.log.warning(
                "%s: %s; trying again with a growing pause (is the read head "
                "or cable plugged in?)",
                self.describe(),
                why,
            )
        return why

    def handle(self, data: bytes, t_ns: int, t_wall: float) -> None:
        """Bytes read at t_ns: to the parser, and each frame on."""
        parser = self.current
        if parser is not None and self._take(parser, data, t_ns, t_wall):
            self._got = True

    def _take(self, parser: Parser, data: bytes, t_ns: int, t_wall: float) -> bool:
        """Feed bytes to the parser; hand each frame on. True if one was good."""
        good = False
        on_edge = self._on_edge
        for frame, values, bad in parser.feed(data):
            observer = self.observer
            if bad is not None:
                self.bad_frames += 1
                if observer is not None:
                    observer.bad(bad)
                if on_edge is not None:
                    on_edge(t_ns, t_wall, BadFrame(bad))
                continue
            self.frames += 1
            if observer is not None:
                observer.frame(values, frame)
            if frame is not None and on_edge is not None:
                on_edge(t_ns, t_wall, frame)
                good = True
            self.extra(t_ns, t_wall)
        return good

    def extra(self, t_ns: int, t_wall: float) -> None:
        """After a good frame: what it holds for other meters (P1's gas)."""

    def stop(self) -> None:
        self._stopping.set()
        port = self._port
        if port is not None:
            try:
                port.cancel_read()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(1.0)


def check_port(device: str) -> None:
    """Exit 2 at start for a port that is not there or not ours to read."""
    if not os.path.exists(device):
        raise InputError(
            f"INPUT['device'] = {device!r}: no such device; plug in the read "
            "head (or P1 cable) and name its port (ls /dev/serial/by-id/)"
        )
    if not os.access(device, os.R_OK | os.W_OK):
        raise InputError(
            f"INPUT['device'] = {device!r}: not readable and writable by this "
            "user; add the user to the port's group (sudo usermod -aG dialout "
            "USER) and log in again"
        )


def _why(exc: BaseException) -> str:
    """An OSError or SerialException in a few words."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)} ({exc.strerror})"
    text = str(exc)
    if "returned no data" in text or "Input/output error" in text:
        return "the device went away (EIO)"
    return text or type(exc).__name__
