"""The GPIO test program, run as root inside the test VM by tests/vm/init.sh.

It makes simulated GPIO chips with the kernel's gpio-sim (through configfs),
drives their lines from sysfs at known times, runs power.py and the input
backends against the real character device, and writes what it saw to
OUTDIR/results.json for the tests on the host to judge. It judges nothing
itself: every scenario records raw facts (driven times, CSV, logs, exit
codes, LED levels read back from the chip).

    guest.py OUTDIR SCENARIO...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SRC = ROOT / "src"
POWER = SRC / "power.py"
GPIO_LIBS = ROOT / ".venv" / "gpio-libs"  # real gpiod, lgpio, rpi-lgpio
CONFIGFS = Path("/sys/kernel/config/gpio-sim")
WORK = Path(os.environ.get("TMPDIR", "/tmp")) / "power-vm"  # guest scratch

# The train every backend reads: intervals cycle through these (ms), so
# rates vary from 1.3 to 9 kW at 10 000 imp/kWh; every BOUNCE_EVERY-th
# flash bounces BOUNCE_AT ms after its falling edge.
PULSES_PER_KWH = 10000
INTERVALS_MS = (40, 55, 75, 100, 140, 200, 280)
FLASH_MS = 12
BOUNCE_EVERY = 5
BOUNCE_AT_MS = (3, 5)  # up at +3 ms, down again at +5 ms: one extra falling edge
INPUT_LINE = 24
DETECT_LINE = 18
READY_LINE = 23
BLINK_MS = 15
DEBOUNCE_MS = 20


class SimChip:
    """One gpio-sim chip of one bank, made live through configfs."""

    def __init__(self, name: str, lines: int, label: str) -> None:
        self.dir = CONFIGFS / name
        self.dir.mkdir()
        bank = self.dir / "bank0"
        bank.mkdir()
        (bank / "num_lines").write_text(str(lines))
        (bank / "label").write_text(label)
        (self.dir / "live").write_text("1")
        self.lines = lines
        self.label = label
        self.device = (self.dir / "dev_name").read_text().strip()
        self.name = (bank / "chip_name").read_text().strip()
        self.path = f"/dev/{self.name}"
        self.sysfs = Path("/sys/devices/platform") / self.device / self.name
        self._fds: Dict[str, int] = {}

    def _fd(self, line: int, attr: str) -> int:
        key = f"{line}/{attr}"
        if key not in self._fds:
            flags = os.O_RDWR if attr == "pull" else os.O_RDONLY
            self._fds[key] = os.open(self.sysfs / f"sim_gpio{line}" / attr, flags)
        return self._fds[key]

    def pull(self, line: int, up: bool) -> None:
        os.pwrite(self._fd(line, "pull"), b"pull-up" if up else b"pull-down", 0)

    def value(self, line: int) -> int:
        return int(os.pread(self._fd(line, "value"), 8, 0).strip())

    def remove(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        (self.dir / "live").write_text("0")
        (self.dir / "bank0").rmdir()
        self.dir.rmdir()


class Driver:
    """Drives one line low (a flash) at planned times and records, for each
    write, the monotonic clock just before and just after it: the edge
    happened between the two. Polls an LED line while waiting."""

    def __init__(self, chip: SimChip, line: int, led: Optional[int] = None) -> None:
        self.chip = chip
        self.line = line
        self.led = led
        self.led_rises: List[int] = []  # when the LED was first seen lit
        self.led_falls: List[int] = []  # and seen dark again
        self._led_level = 0 if led is None else chip.value(led)
        self.writes: List[List[Any]] = []  # every write: [before, after, up]

    def _write(self, up: bool) -> List[int]:
        before = time.monotonic_ns()
        self.chip.pull(self.line, up)
        window = [before, time.monotonic_ns()]
        self.writes.append([*window, up])
        return window

    def _wait_until(self, deadline_ns: int) -> None:
        while True:
            now = time.monotonic_ns()
            if now >= deadline_ns:
                return
            if self.led is not None:
                level = self.chip.value(self.led)
                if level and not self._led_level:
                    self.led_rises.append(now)
                elif self._led_level and not level:
                    self.led_falls.append(now)
                self._led_level = level
                time.sleep(min(0.001, (deadline_ns - now) / 1e9))
            else:
                time.sleep(min(0.002, (deadline_ns - now) / 1e9))

    def train(
        self, count: int, intervals_ms=INTERVALS_MS, bounce_every: int = BOUNCE_EVERY
    ) -> Dict[str, Any]:
        """`count` flashes; returns the falling edges' write windows and the
        number of bounces driven."""
        edges: List[List[int]] = []
        bounce_edges: List[List[int]] = []  # the extra falling edge of each
        bounces = 0
        # Ahead of the daemon's threads in this guest (the host can still
        # stall the whole guest: the tests judge by the recorded times).
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        next_ns = time.monotonic_ns() + 50_000_000
        for i in range(count):
            self._wait_until(next_ns)
            edges.append(self._write(False))
            start = edges[-1][0]
            if bounce_every and i % bounce_every == bounce_every - 1:
                self._wait_until(start + BOUNCE_AT_MS[0] * 1_000_000)
                self._write(True)
                self._wait_until(start + BOUNCE_AT_MS[1] * 1_000_000)
                bounce_edges.append(self._write(False))
                bounces += 1
            self._wait_until(start + FLASH_MS * 1_000_000)
            self._write(True)
            next_ns = start + intervals_ms[i % len(intervals_ms)] * 1_000_000
        # The last blink, watched for longer than the tests allow it to come.
        self._wait_until(time.monotonic_ns() + 1_000_000_000)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return {
            "edges": edges,
            "bounce_edges": bounce_edges,
            "bounces": bounces,
            "writes": self.writes,
            "led_rises": self.led_rises,
            "led_falls": self.led_falls,
        }


# Running power.py ----------------------------------------------------------------


def open_to_all(path: str) -> None:
    """Let an ordinary user reach `path` in this guest. The guest's root is
    the host's, read only; where a directory on the way cannot be entered by
    others (an interpreter under a 0700 home), a tmpfs is laid over it with
    just the next step of the path bound back in."""
    host = Path("/run/host")
    if not host.is_dir():
        host.mkdir()
        subprocess.run(["mount", "--bind", "/", str(host)], check=True)
    parts = Path(path).parts
    for i in range(1, len(parts) - 1):
        folder = Path(*parts[: i + 1])
        if os.stat(folder).st_mode & 0o001:
            continue
        step = parts[i + 1]
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "mode=755", "opened", str(folder)],
            check=True,
        )
        (folder / step).mkdir()
        source = host.joinpath(*parts[1 : i + 2])
        subprocess.run(["mount", "--bind", str(source), str(folder / step)], check=True)


def gpio_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(GPIO_LIBS)
    env.update(extra)
    return env


def rpi_lgpio_env(chip: SimChip) -> Dict[str, str]:
    """rpi-lgpio on this chip: it reads the Pi's revision from the device
    tree, which a PC has not; RPI_LGPIO_REVISION (its own test hook) names
    a Pi 4 B instead, and RPI_LGPIO_CHIP the chip."""
    number = chip.name[len("gpiochip") :]
    return gpio_env(RPI_LGPIO_CHIP=number, RPI_LGPIO_REVISION="c03111")


def power(args: List[str], env: Dict[str, str], timeout: float = 120, **kw):
    return subprocess.run(
        [sys.executable, str(POWER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def write_settings(folder: Path, input_: Dict[str, Any], leds: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o777)  # an ordinary user runs here too
    names: Dict[str, Any] = {
        "METER": {
            "name": "house",
            "pulses_per_kwh": PULSES_PER_KWH,
            "debounce_ms": DEBOUNCE_MS,
            "idle_timeout_s": 0,
        },
        "INPUT": input_,
        "DATA_DIR": str(folder / "data"),
        "SINKS": [{"type": "file", "path": str(folder / "data" / "power.csv")}],
    }
    if leds:
        names["LEDS"] = {
            "detect": DETECT_LINE,
            "ready": READY_LINE,
            "blink_ms": BLINK_MS,
        }
    path = folder / "settings.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in names.items()))
    os.chmod(path, 0o644)
    return path


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def wait_for(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


# Scenarios ---------------------------------------------------------------------


def daemon_run(
    chip: SimChip,
    name: str,
    input_: Dict[str, Any],
    count: int,
    foreground: bool,
    env: Dict[str, str],
) -> Dict[str, Any]:
    """The whole daemon on the chip: start, drive `count` flashes, stop."""
    folder = WORK / name
    settings = write_settings(folder, input_)
    log = folder / "power.log"
    pidfile = folder / "power.pid"
    chip.pull(INPUT_LINE, True)  # the idle level of a pulled-up input
    common = [
        "--settings",
        str(settings),
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(log),
    ]
    result: Dict[str, Any] = {"chip": chip.path, "label": chip.label}
    started = time.monotonic()
    proc = None
    if foreground:
        proc = subprocess.Popen(
            [sys.executable, str(POWER), *common, "--nodaemon", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    else:
        done = power(common, env)
        result["start"] = {"code": done.returncode, "output": done.stdout + done.stderr}
        if done.returncode != 0:
            result["log"] = read(log)
            return result
    up = wait_for(lambda: " reads " in read(log), 60)
    result["startup_s"] = time.monotonic() - started
    if not up:
        if proc is not None:
            proc.kill()
            result["output"] = proc.communicate()[0]
        result["log"] = read(log)
        return result
    ready = wait_for(lambda: chip.value(READY_LINE) == 1, 5)
    result["ready_led_on"] = bool(ready)
    status = power([*common, "--status"], env)
    result["status"] = {
        "code": status.returncode,
        "output": status.stdout + status.stderr,
    }
    driver = Driver(chip, INPUT_LINE, led=DETECT_LINE)
    result.update(driver.train(count))
    status = power([*common, "--status"], env)
    result["status_after"] = status.stdout + status.stderr  # rejected edges
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        result["output"] = proc.communicate(timeout=30)[0]
        result["exit"] = proc.returncode
    else:
        done = power([*common, "--kill"], env)
        result["exit"] = done.returncode
        result["output"] = done.stdout + done.stderr
    result["ready_led_after"] = chip.value(READY_LINE)
    result["detect_led_after"] = chip.value(DETECT_LINE)
    result["csv"] = read(folder / "data" / "power.csv")
    result["log"] = read(log)
    return result


def scenario_gpiod_daemon(chips: Dict[str, SimChip]) -> Dict[str, Any]:
    """backend 'auto' (which finds gpiod and the header chip by its label),
    in the foreground."""
    return daemon_run(
        chips["header"],
        "gpiod",
        {"backend": "auto", "pin": INPUT_LINE},
        300,
        foreground=True,
        env=gpio_env(),
    )


def scenario_rpigpio_daemon(chips: Dict[str, SimChip]) -> Dict[str, Any]:
    """backend 'rpigpio' with rpi-lgpio as RPi.GPIO, as a real daemon."""
    chip = chips["header"]
    env = rpi_lgpio_env(chip)
    return daemon_run(
        chip,
        "rpigpio",
        {"backend": "rpigpio", "pin": INPUT_LINE},
        200,
        foreground=False,
        env=env,
    )


def scenario_timestamps(chips: Dict[str, SimChip]) -> Dict[str, Any]:
    """Kernel edge timestamps through the gpiod backend, with the kernel
    filter off and at several periods, against the driver's write windows."""
    sys.path[:0] = [str(GPIO_LIBS), str(SRC)]
    import logging

    from core.meter import START, MeterConfig
    from inputs.libgpiod import GpiodInput

    chip = chips["header"]
    line = 30
    out: Dict[str, Any] = {}
    log = logging.getLogger("timestamps")
    for filter_ms in (0.0, 1.0):
        chip.pull(line, True)
        stamps: List[int] = []

        def on_edge(ns: int, wall: float, kind: int, stamps=stamps) -> None:
            if kind == START:  # the falling edges: where flashes start
                stamps.append(ns)

        backend = GpiodInput(
            {"backend": "gpiod", "chip": chip.path, "line": line, "edge": "falling",
             "pull": "up", "filter_ms": filter_ms},
            MeterConfig("m", 1000, 0, 30000, 0, 0),
            log,
        )  # fmt: skip
        backend.start(on_edge, lambda: 0)
        time.sleep(0.2)
        driven = Driver(chip, line).train(
            150, intervals_ms=(30, 45, 60), bounce_every=0
        )
        time.sleep(0.3)
        backend.stop()
        out[f"{filter_ms:g}"] = {"edges": driven["edges"], "stamps": stamps}
    return out


# Flash widths: ghosts, bounces and an inverted sensor ------------------------

WIDTH_FLASHES = 16  # 50 ms flashes every 500 ms
WIDTH_GAP_MS = 500
WIDTH_FLASH_MS = 50
WIDE_GHOST_MS = (80, 300)  # after each even flash: on at +80 ms for 300 ms
NARROW_GHOST_MS = (200, 2)  # after each odd flash: on at +200 ms for 2 ms
WIDTH_BOUNCE_EVERY = 4  # a 2 ms dark gap 3 ms into every fourth flash
INVERTED_FLASHES = 8


def width_train() -> List[Tuple[int, bool]]:
    """(ms from the start, line up?) for the ghost train, in order."""
    out: List[Tuple[int, bool]] = []
    for i in range(WIDTH_FLASHES):
        t = i * WIDTH_GAP_MS
        out.append((t, False))
        if i % WIDTH_BOUNCE_EVERY == WIDTH_BOUNCE_EVERY - 1:
            out += [(t + 3, True), (t + 5, False)]
        out.append((t + WIDTH_FLASH_MS, True))
        if i < WIDTH_FLASHES - 1:
            at, width = WIDE_GHOST_MS if i % 2 == 0 else NARROW_GHOST_MS
            out += [(t + at, False), (t + at + width, True)]
    return out


def drive(chip: SimChip, line: int, changes: List[Tuple[int, bool]]) -> List[Any]:
    """Set the line's pull at the planned times; each write's window."""
    driver = Driver(chip, line)
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    start = time.monotonic_ns() + 50_000_000
    windows = []
    try:
        for at_ms, up in changes:
            driver._wait_until(start + at_ms * 1_000_000)
            windows.append([*driver._write(up), up])
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return windows


# A host busy enough can stall the guest between two writes of the widths
# train and stretch a 2 ms ghost or bounce past min_pulse_ms: the scenario
# then judges a train other than the one planned. Such a run is driven
# again (a fresh daemon or watch), up to ATTEMPTS times; the results say
# how many it took.
ATTEMPTS = 5
PLAN_SLACK_MS = 1.0


def as_planned(windows: List[Any], changes: List[Tuple[int, bool]]) -> bool:
    """Whether every gap between two writes held the planned gap (within
    what the writes' windows allow, plus PLAN_SLACK_MS)."""
    slack = PLAN_SLACK_MS * 1e6
    pairs = zip(changes, changes[1:], windows, windows[1:])
    for (at0, _), (at1, _), (b0, a0, _), (b1, a1, _) in pairs:
        planned = (at1 - at0) * 1e6
        if planned < (b1 - a0) - slack or planned > (a1 - b0) + slack:
            return False
    return True


def width_settings(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o777)
    names = {
        "METER": {"name": "house", "pulses_per_kwh": 1000, "debounce_ms": 20},
        "INPUT": {"backend": "auto", "pin": INPUT_LINE},
        "DATA_DIR": str(folder / "data"),
        "SINKS": [{"type": "file", "path": str(folder / "data" / "power.csv")}],
        "LOGFILE": str(folder / "power.log"),
    }
    path = folder / "settings.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in names.items()))
    return path


def watch_while(
    settings: Path, seconds: float, changes, chip: SimChip, record: Path
) -> Dict[str, Any]:
    """Run `power.py watch` on the line while driving `changes`."""
    proc = subprocess.Popen(
        [sys.executable, str(POWER), "--settings", str(settings), "watch",
         "--plain", "--seconds", str(seconds), "--record", str(record)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=gpio_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # the input is open: drive it
    windows = drive(chip, INPUT_LINE, changes)
    # Read on from the same buffered stream (communicate() would bypass it).
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=seconds + 60)
    return {
        "exit": proc.returncode,
        "output": first + out,
        "stderr": err,
        "windows": windows,
        "record": read(record),
    }


def scenario_widths(chips: Dict[str, SimChip]) -> Dict[str, Any]:
    """Ghosts among 50 ms flashes, bounces and an inverted sensor, on the
    gpiod backend: the daemon live, watch live with --record, the record
    replayed by the daemon, and watch on the inverted sensor."""
    chip = chips["header"]
    out: Dict[str, Any] = {"train": width_train()}
    train_s = (WIDTH_FLASHES * WIDTH_GAP_MS) / 1000
    # The daemon, live.
    for attempt in range(1, ATTEMPTS + 1):
        folder = WORK / f"widths-daemon-{attempt}"
        settings = width_settings(folder)
        chip.pull(INPUT_LINE, True)
        proc = subprocess.Popen(
            [sys.executable, str(POWER), "--settings", str(settings), "--nodaemon",
             "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=gpio_env(), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log = folder / "power.log"
        wait_for(lambda: " reads " in read(log), 60)  # noqa: B023
        out["daemon_windows"] = drive(chip, INPUT_LINE, width_train())
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out["daemon_output"] = proc.communicate(timeout=30)[0]
        out["daemon_exit"] = proc.returncode
        out["daemon_log"] = read(log)
        out["daemon_csv"] = read(folder / "data" / "power.csv")
        status = power(["--settings", str(settings), "--status"], gpio_env())
        out["daemon_status"] = status.stdout + status.stderr
        out["daemon_attempts"] = attempt
        if as_planned(out["daemon_windows"], width_train()):
            break
    # watch, live, recording.
    for attempt in range(1, ATTEMPTS + 1):
        folder = WORK / f"widths-watch-{attempt}"
        settings = width_settings(folder)
        chip.pull(INPUT_LINE, True)
        record = folder / "evening.edges"
        out["watch"] = watch_while(settings, train_s + 1.0, width_train(), chip, record)
        out["watch"]["attempts"] = attempt
        if as_planned(out["watch"]["windows"], width_train()):
            break
    # The record replayed by the daemon.
    folder = WORK / "widths-replay"
    settings = width_settings(folder)
    done = power(
        ["--settings", str(settings), "--replay", str(record), "--speed", "0",
         "--nodaemon", "--quiet"],
        gpio_env(),
    )  # fmt: skip
    out["replay"] = {
        "exit": done.returncode,
        "output": done.stdout + done.stderr,
        "log": read(folder / "power.log"),
    }
    # An inverted sensor: the line low (active) but for 50 ms flashes high.
    folder = WORK / "widths-inverted"
    settings = width_settings(folder)
    chip.pull(INPUT_LINE, False)
    inverted: List[Tuple[int, bool]] = []
    for i in range(INVERTED_FLASHES):
        inverted += [(i * 400, True), (i * 400 + 50, False)]
    out["inverted"] = watch_while(
        settings, INVERTED_FLASHES * 0.4 + 1.0, inverted, chip, folder / "inv.edges"
    )
    chip.pull(INPUT_LINE, True)
    return out


def run_faults(chips: Dict[str, SimChip]) -> Dict[str, Any]:
    """Each fault with each backend: exit code, output and log."""
    header, decoy = chips["header"], chips["decoy"]
    cases: Dict[str, Any] = {}

    def case(name: str, input_: Dict[str, Any], env: Dict[str, str], user=None):
        folder = WORK / "faults" / name
        settings = write_settings(folder, input_, leds=False)
        log = folder / "power.log"
        kw: Dict[str, Any] = {}
        if user is not None:
            kw = {"user": user, "group": user, "extra_groups": []}
        done = power(
            [
                "--settings",
                str(settings),
                "--nodaemon",
                "--quiet",
                "--logfile",
                str(log),
            ],
            env,
            timeout=60,
            **kw,
        )
        cases[name] = {
            "code": done.returncode,
            "output": done.stdout + done.stderr,
            "log": read(log),
        }

    rpi_env = rpi_lgpio_env(header)
    gpiod_in = {"backend": "gpiod", "chip": header.path, "line": INPUT_LINE}
    rpi_in = {"backend": "rpigpio", "pin": INPUT_LINE}
    auto_in = {"backend": "auto", "pin": INPUT_LINE}

    # Busy: another program holds the input line.
    sys.path[:0] = [str(GPIO_LIBS)]
    import gpiod

    holder = gpiod.request_lines(
        header.path, consumer="other-program", config={INPUT_LINE: None}
    )
    try:
        case("busy-gpiod", gpiod_in, gpio_env())
        case("busy-rpigpio", rpi_in, rpi_env)
    finally:
        holder.release()
    # No permission: an ordinary user, and /dev/gpiochip* are root's.
    open_to_all(os.path.realpath(sys.executable))
    case("perm-gpiod", gpiod_in, gpio_env(), user=65534)
    case("perm-rpigpio", rpi_in, rpi_env, user=65534)
    case("perm-auto", auto_in, gpio_env(), user=65534)
    # A chip that does not exist.
    case("nochip-gpiod", {**gpiod_in, "chip": "gpiochip7"}, gpio_env())
    case("nochip-rpigpio", rpi_in, {**rpi_env, "RPI_LGPIO_CHIP": "7"})
    case("nochip-auto", {**auto_in, "chip": "gpiochip7"}, gpio_env())
    # A line past the chip's end (the decoy has 8 lines).
    case("offset-gpiod", {**gpiod_in, "chip": decoy.path, "line": 20}, gpio_env())
    case(
        "offset-rpigpio",
        {**rpi_in, "pin": 20},
        rpi_lgpio_env(decoy),
    )
    case("offset-auto", {**auto_in, "chip": decoy.path, "pin": 20}, gpio_env())
    return cases


# An open-collector direction output (vzlogger's gpio_dir): pulled up while
# importing, pulled low by the meter while it exports.
DIRECTION_LINE = 25
EXPORT_LINE = 26  # a second sensor, on the meter's export LED
EXPORT_FLASHES = (6, 6, 4)  # importing, exporting by direction, export LED
EXPORT_GAP_MS = 300


def scenario_export(chips: Dict[str, SimChip]) -> Dict[str, Any]:
    """An LED meter with a direction input and an export LED, on gpiod:
    flashes while importing, flashes while the direction line says
    exporting, then flashes on the export LED."""
    chip = chips["header"]
    folder = WORK / "export"
    settings = write_settings(
        folder,
        {"backend": "gpiod", "chip": chip.path, "line": INPUT_LINE,
         "direction_line": DIRECTION_LINE, "direction_active": "low",
         "export_line": EXPORT_LINE},
        leds=False,
    )  # fmt: skip
    for line in (INPUT_LINE, EXPORT_LINE, DIRECTION_LINE):
        chip.pull(line, True)  # idle sensors; the direction line: importing
    log = folder / "power.log"
    proc = subprocess.Popen(
        [sys.executable, str(POWER), "--settings", str(settings), "--logfile",
         str(log), "--nodaemon", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=gpio_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out: Dict[str, Any] = {}
    if not wait_for(lambda: " reads " in read(log), 60):
        proc.kill()
        return {"output": proc.communicate()[0], "log": read(log)}
    imported, exported, led = EXPORT_FLASHES
    out["import"] = Driver(chip, INPUT_LINE).train(
        imported, (EXPORT_GAP_MS,), bounce_every=0
    )["edges"]
    chip.pull(DIRECTION_LINE, False)  # the sun: exporting from here
    out["export"] = Driver(chip, INPUT_LINE).train(
        exported, (EXPORT_GAP_MS,), bounce_every=0
    )["edges"]
    chip.pull(DIRECTION_LINE, True)
    out["export_led"] = Driver(chip, EXPORT_LINE).train(
        led, (EXPORT_GAP_MS,), bounce_every=0
    )["edges"]
    proc.send_signal(signal.SIGTERM)
    out["output"] = proc.communicate(timeout=30)[0]
    out["exit"] = proc.returncode
    out["log"] = read(log)
    out["csv"] = read(folder / "data" / "power.csv")
    return out


SCENARIOS: Dict[str, Callable[[Dict[str, SimChip]], Dict[str, Any]]] = {
    "gpiod_daemon": scenario_gpiod_daemon,
    "rpigpio_daemon": scenario_rpigpio_daemon,
    "timestamps": scenario_timestamps,
    "widths": scenario_widths,
    "faults": run_faults,
    "export": scenario_export,
}


def main(argv: List[str]) -> int:
    out = Path(argv[0])
    results: Dict[str, Any] = {"uname": os.uname().release, "boot_s": time.monotonic()}
    WORK.mkdir(parents=True, exist_ok=True)
    os.chmod(WORK, 0o777)
    # A small chip first, so the header chip is not gpiochip0 (as on a Pi 5):
    # the auto backend must find it by its label.
    chips = {
        "decoy": SimChip("decoy", 8, "gpio-decoy"),
        "header": SimChip("header", 54, "pinctrl-bcm2711"),
    }
    results["chips"] = {k: [c.path, c.label, c.lines] for k, c in chips.items()}
    clocks = Path("/sys/devices/system/clocksource/clocksource0")
    for name in argv[1:]:
        started = time.monotonic()
        try:
            results[name] = SCENARIOS[name](chips)
        except Exception:
            results[name] = {"error": traceback.format_exc()}
        results[f"{name}_s"] = time.monotonic() - started
        print(f"{name}: {results[f'{name}_s']:.1f} s", flush=True)
    # Every timing figure is only as fine as the clock: read it at the end,
    # after any switch away from an unstable TSC.
    results["clocksource"] = read(clocks / "current_clocksource").strip()
    (out / "results.json").write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda args: traceback.print_exception(
        args.exc_type, args.exc_value, args.exc_traceback
    )
    sys.exit(main(sys.argv[1:]))
