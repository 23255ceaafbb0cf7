"""Loading settings.py and checking every value before anything starts.

settings.py is a Python module of upper-case names. It is run in a fresh
namespace (never imported into sys.modules), every name is checked against
the option tables of the parts it configures, and the result is a set of
typed objects. Any mistake becomes one SettingsError (exit 2) naming the
setting, the value and what is expected.
"""

from __future__ import annotations

import ast
import os
import pickle
import re
import runpy
import signal
import stat
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Type

from config.plugins import backend_class, sink_class
from core.meter import KINDS, MeterConfig
from core.options import Interrupted, Option, SettingsError, show, validate
from core.regmeter import REGISTER_UNITS
from inputs.base import FedInput, InputBackend, InputError
from sinks.base import COMMON_OPTIONS, Sink
from web.metrics import MetricsSetup
from web.metrics import parse as parse_metrics
from web.page import WebSetup
from web.page import parse as parse_web

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_name(value: str) -> Optional[str]:
    if NAME_RE.fullmatch(value):
        return None
    return "expected 1 to 64 letters, digits, '_' or '-'"


METER_OPTIONS: Dict[str, Option] = {
    "name": Option("str", "main", check=_check_name),
    "kind": Option("str", "electricity", choices=KINDS),
    "pulses_per_kwh": Option("number", 1000.0, minimum=0.001, maximum=1e7),
    "pulses_per_m3": Option("number", None, nullable=True, minimum=0.001, maximum=1e7),
    "max_flow_m3h": Option("number", None, nullable=True, minimum=0.001, maximum=1e6),
    "debounce_ms": Option("number", 50.0, minimum=0.0, maximum=60000.0),
    "max_power_w": Option("number", 30000.0, minimum=1.0, maximum=1e9),
    "idle_timeout_s": Option("number", 0.0, minimum=0.0, maximum=1e7),
    "energy_offset_kwh": Option("number", 0.0, minimum=-1e12, maximum=1e12),
    "estimate_fall": Option("number", 0.2, minimum=0.0, maximum=0.9),
    "min_pulse_ms": Option("number", 5.0, minimum=0.0, maximum=60000.0),
    "max_pulse_ms": Option("number", 250.0, minimum=0.0, maximum=600000.0),
}

LEDS_OPTIONS: Dict[str, Option] = {
    "detect": Option("int", None, nullable=True, minimum=0, maximum=1000),
    "ready": Option("int", None, nullable=True, minimum=0, maximum=1000),
    "blink_ms": Option("number", 100.0, minimum=1.0, maximum=10000.0),
}

# In METERS, each meter also carries its input and its detect LED.
METERS_EXTRA: Dict[str, Option] = {
    "input": Option("dict"),
    "detect_led": Option("int", None, nullable=True, minimum=0, maximum=1000),
    # An LED meter held against a register meter of the same meter.
    "register_meter": Option("str", None, nullable=True),
    "drift_warn_pulses_per_day": Option("number", 10.0, minimum=0.0, maximum=1e9),
    "drift_check_s": Option("number", 3600.0, minimum=1.0, maximum=86400.0),
    "auto_rebase": Option("bool", False),
}


@dataclass(frozen=True)
class Compare:
    """An LED meter held against the register of the same meter: a
    register reading of it every check_s, a warning past warn_per_day
    pulses of drift a day, and, with auto_rebase, the LED's count re-based
    on the register (upward only: a total never goes down)."""

    register_meter: str
    warn_per_day: float
    check_s: float
    auto_rebase: bool


TOP_LEVEL = {
    "METER",
    "INPUT",
    "METERS",
    "LEDS",
    "DATA_DIR",
    "SINKS",
    "PIDFILE",
    "LOGFILE",
    "LOG_LEVEL",
    "RETENTION_DAYS",
    "DRAIN_TIMEOUT_S",
    "COMMIT_INTERVAL_S",
    "METRICS",
    "WEB",
}

DEFAULT_DATA_DIR = "/var/lib/power"
DEFAULT_BACKEND = "auto"
# Readings are synced to the journal at most this often (the first after a
# quiet spell at once): one sync per commit, whatever the sinks. 30 s keeps
# an SD card under 2 KB written per reading at one pulse a second (with 5 s,
# ext4's own journal and SQLite's -shm file made it 7 KB); a power cut loses
# the pulses of the last interval at most.
DEFAULT_COMMIT_INTERVAL_S = 30


@dataclass(frozen=True)
class MeterSetup:
    """One meter: its maths, its input backend and its detect LED."""

    config: MeterConfig
    input_class: Type[InputBackend]
    input_options: Dict[str, Any]
    detect_led: Optional[int]
    input_note: str = ""  # which backend reads it and why (log, --status)
    compare: Optional[Compare] = None  # held against a register meter

    def preflight(self) -> None:
        """The input's own checks before a start (SettingsError saying
        why); a backend that 'auto' chose says so, and why it chose it."""
        try:
            self.input_class.preflight(self.input_options)
        except InputError as exc:
            note = self.input_note
            if note.startswith("auto: "):
                raise SettingsError(
                    f"INPUT['backend'] = 'auto' chose {note[len('auto: ') :]}; "
                    f"but {exc}"
                ) from None
            raise SettingsError(str(exc)) from None


@dataclass(frozen=True)
class SinkSetup:
    name: str
    cls: Type[Sink]
    options: Dict[str, Any]  # the sink's own keys
    batch_size: int
    flush_interval_s: float
    retry_max_s: float


@dataclass(frozen=True)
class Settings:
    path: str
    meters: List[MeterSetup]
    data_dir: str
    sinks: List[SinkSetup]
    ready_led: Optional[int] = None
    blink_ms: float = 100.0
    pidfile: Optional[str] = None
    logfile: Optional[str] = None
    log_level: str = "INFO"
    retention_days: float = 90.0
    drain_timeout_s: float = 60.0
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S
    secrets: List[str] = field(default_factory=list)
    metrics: Optional[MetricsSetup] = None  # Prometheus; None is off
    web: Optional[WebSetup] = None  # the page; None is off


# src/, where power.py is: settings.py beside it is the default.
SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_settings_path() -> str:
    """$POWER_SETTINGS, else settings.py beside power.py."""
    return os.environ.get("POWER_SETTINGS") or os.path.join(SRC_DIR, "settings.py")


def load_for_run(
    path: Optional[str],
    simulate: Optional[float] = None,
    replay: Optional[str] = None,
    speed: Optional[float] = None,
    strict: Optional[bool] = None,
    service_uid: Optional[int] = None,
) -> Settings:
    """The settings at `path` (default: default_settings_path()) with the
    command line's --simulate, --replay and --speed; SettingsError if wrong.
    `strict` and `service_uid` as for load()."""
    settings = load(path or default_settings_path(), strict, service_uid)
    if simulate is not None:
        options: Dict[str, Any] = {"watts": simulate}
        if speed is not None:
            options["speed"] = speed
        return with_input(settings, "simulated", options)
    if replay is not None:
        options = {"path": replay, "speed": 1.0 if speed is None else speed}
        return with_input(settings, "replay", options)
    if speed is not None:
        return with_speed(settings, speed)
    return settings


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def read_module(
    path: str, warn: Optional[Callable[[str], None]] = None
) -> Dict[str, Any]:
    """Run settings.py and return its upper-case names.

    It runs in a child process and hands its names back (plain data): what
    a settings file may do besides assigning names (os._exit(7), a crash, a
    signal) ends the child, never power, and is said as a settings mistake.
    """
    if not os.path.isfile(path):
        raise SettingsError(
            f"settings file {path} not found: copy src/settings.py.example to "
            "that path and edit it, or name another with --settings PATH"
        )
    read, write = os.pipe()
    # A stop signal waits until the fork is done: in its hooks (logging's
    # lock release) Python would swallow the raise, with a traceback.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        child = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    if child == 0:  # the child: run the file, send the names, end
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read)
            answer = _run_in_child(path)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(answer)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0)
    os.close(write)
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(child, 0)
    except BaseException:  # a stop signal while it ran: no child left behind
        try:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        except OSError:
            pass
        raise
    if not data:
        raise SettingsError(
            f"settings file {path} ended the program while it ran ("
            + (
                f"exit status {os.WEXITSTATUS(status)}"
                if os.WIFEXITED(status)
                else f"signal {os.WTERMSIG(status)}"
            )
            + "); a settings file only assigns names"
        )
    kind, value = pickle.loads(data)  # from our own child
    if kind == "interrupted":
        raise Interrupted(value)
    if kind == "error":
        raise SettingsError(value)
    names, near = value
    for name in near:
        (warn or _warn)(
            f"settings file {path}: {name!r} is not a setting and is ignored "
            f"(settings are upper case): did you mean {name.upper()}?"
        )
    return names


def _run_in_child(path: str) -> bytes:
    """The settings file's upper-case names, or its error, pickled."""
    try:
        namespace = runpy.run_path(path, run_name="power_settings")
    except SyntaxError as exc:
        return pickle.dumps(
            (
                "error",
                f"settings file {path} line {exc.lineno}: {exc.msg}; fix the "
                "Python syntax there",
            )
        )
    except Interrupted as exc:  # a real signal, not the settings file
        return pickle.dumps(("interrupted", exc.args[0] if exc.args else 2))
    except BaseException as exc:  # exit(), KeyboardInterrupt too: exit 2
        return pickle.dumps(("error", _run_error(path, exc)))
    names = {
        k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")
    }
    # A name a setting's only by case (Data_Dir) is ignored: say which.
    near = sorted(k for k in namespace if k.upper() in TOP_LEVEL and k not in names)
    try:
        return pickle.dumps(("ok", (names, near)))
    except Exception as exc:  # a function, a module, an open file...
        return pickle.dumps(
            (
                "error",
                f"settings file {path} holds a value that is not plain data "
                f"({type(exc).__name__}); settings are numbers, strings, None, "
                "True, False, lists and dicts",
            )
        )


def trust_problem(path: str, allowed_uids: Sequence[int]) -> Optional[str]:
    """Why the settings file is not safe to run as power (None: it is): it
    is code, so whoever can change it runs code as power, as root at boot.
    Writable by group or others, or owned by another user than root or
    `allowed_uids`, it is refused, as ssh and sudo refuse such files."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # read_module says what is wrong with it
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "others" if mode & stat.S_IWOTH else "its group"
        return (
            f"settings file {path} is writable by {who} (mode {mode:04o}), and "
            "whoever can change it runs code as power; make it writable by its "
            f"owner only: chmod go-w {path}"
        )
    if st.st_uid not in (0, *allowed_uids):
        return (
            f"settings file {path} belongs to uid {st.st_uid}, not to root or the "
            "user power runs as, and whoever owns it runs code as power; give it "
            f"to root or to that user: sudo chown root {path}"
        )
    return None


SECRET_KEY_RE = re.compile(r"pass|token|secret|key|credential|auth", re.IGNORECASE)
WORD_RE = re.compile(r"[A-Za-z0-9_.@$%^&*+/!?~-]{3,}")


def _run_error(path: str, exc: BaseException) -> str:
    """What a settings file raised, with its line, and without echoing any
    word of a line that names a secret (an unquoted password is a NameError
    whose message repeats it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame in the settings file
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f"settings file {path}" + (f" line {line}" if line else "")
    kind = type(exc).__name__
    if isinstance(exc, SystemExit):
        return f"{where} called exit() ({kind}); a settings file only assigns names"
    if isinstance(exc, KeyboardInterrupt):
        return f"{where} was interrupted ({kind}) while it ran"
    text = str(exc)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
    except OSError:
        source = ""
    secret_lines = [t for t in source.splitlines() if SECRET_KEY_RE.search(t)]
    words = {w for t in secret_lines for w in WORD_RE.findall(t)}
    words |= _secret_values(source)
    if any(w in text for w in words) or (text and SECRET_KEY_RE.search(text)):
        text = "(message not shown: it may hold a secret)"
    hint = ""
    if isinstance(exc, NameError):
        hint = "; text values need quotes, e.g. 'password': 'my secret'"
    return f"{where} failed to run: {kind}: {text}{hint}"


def _secret_values(source: str) -> set:
    """Every text the file gives a key or a name that says secret (a
    password over several lines, a token in a variable), so a message that
    repeats one (an assert's, a repr of SINKS) is never shown."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found = set()

    def texts(node: ast.AST) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                if len(sub.value) >= 3:
                    found.add(sub.value)

    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                name = key.value if isinstance(key, ast.Constant) else None
                if isinstance(name, str) and SECRET_KEY_RE.search(name):
                    texts(value)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if node.value is not None and any(SECRET_KEY_RE.search(n) for n in names):
                texts(node.value)
        elif (
            isinstance(node, ast.keyword)
            and node.arg
            and SECRET_KEY_RE.search(node.arg)
        ):
            texts(node.value)  # dict(password="...")
    return found


# What a gas or water meter counts by default, where METER does not say:
# a reed switch bounces for far longer than an LED (a G4 gas meter at its
# maximum flow gives one 0.01 m3 pulse every 6 s, so a second of debounce
# holds), and its contact may stay closed for minutes when the dial stops
# on the magnet (no upper flash width).
VOLUME_DEFAULTS = {
    "gas": {"pulses_per_m3": 100.0, "max_flow_m3h": 10.0, "debounce_ms": 1000.0},
    "water": {"pulses_per_m3": 1000.0, "max_flow_m3h": 5.0, "debounce_ms": 250.0},
}
VOLUME_WIDTHS = {"min_pulse_ms": 20.0, "max_pulse_ms": 0.0}


def _meter(where: str, given: Any) -> MeterConfig:
    values = validate(where, given, METER_OPTIONS)
    kind = values["kind"]
    if kind == "electricity":
        for key in ("pulses_per_m3", "max_flow_m3h"):
            if values[key] is not None:
                raise SettingsError(
                    f"{where}[{key!r}] = {show(values[key])}: only a gas or water "
                    f"meter has it; set {where}['kind'] = 'gas' or 'water', or "
                    "leave it out"
                )
    else:
        for key in ("pulses_per_kwh", "max_power_w"):
            if isinstance(given, dict) and key in given:
                other = "pulses_per_m3" if key == "pulses_per_kwh" else "max_flow_m3h"
                raise SettingsError(
                    f"{where}[{key!r}]: a {kind} meter counts m³; give {other} instead"
                )
        for key, default in {**VOLUME_DEFAULTS[kind], **VOLUME_WIDTHS}.items():
            if values.get(key) is None or key not in given:
                values[key] = default
        values["pulses_per_kwh"] = values["pulses_per_m3"]
        values["max_power_w"] = values["max_flow_m3h"]
    low, high = values["min_pulse_ms"], values["max_pulse_ms"]
    if high and low >= high:
        raise SettingsError(
            f"{where}['max_pulse_ms'] = {show(high)}: expected more than "
            f"min_pulse_ms ({show(low)}), or 0 for no upper limit"
        )
    return MeterConfig(
        name=values["name"],
        pulses_per_kwh=float(values["pulses_per_kwh"]),
        debounce_ms=float(values["debounce_ms"]),
        max_power_w=float(values["max_power_w"]),
        idle_timeout_s=float(values["idle_timeout_s"]),
        energy_offset_kwh=float(values["energy_offset_kwh"]),
        estimate_fall=float(values["estimate_fall"]),
        min_pulse_ms=float(values["min_pulse_ms"]),
        max_pulse_ms=float(values["max_pulse_ms"]),
        kind=kind,
    )


def _register_meter(where: str, config: MeterConfig, given: Any) -> MeterConfig:
    """A meter read from its register counts Wh (litres): no pulse maths."""
    if isinstance(given, dict):
        for key in ("pulses_per_kwh", "pulses_per_m3", "debounce_ms"):
            if key in given:
                raise SettingsError(
                    f"{where}[{key!r}]: a register input reads the meter's own "
                    "total, not pulses; leave it out"
                )
    return replace(
        config,
        pulses_per_kwh=REGISTER_UNITS,
        debounce_ms=0.0,
        min_pulse_ms=0.0,
        max_pulse_ms=0.0,
        estimate_fall=0.0,
    )


def _check_compare(meters: List[MeterSetup]) -> None:
    """register_meter names a register meter; it is set on an LED meter."""
    by_name = {m.config.name: m for m in meters}
    for i, m in enumerate(meters):
        if m.compare is None:
            continue
        where = f"METERS[{i}]['register_meter'] = {m.compare.register_meter!r}"
        other = by_name.get(m.compare.register_meter)
        if m.input_class.REGISTER or m.config.kind != "electricity":
            raise SettingsError(
                f"{where}: set it on the meter that counts the LED's pulses, "
                "naming the meter that reads the register"
            )
        if (
            other is None
            or not other.input_class.REGISTER
            or other.config.kind != "electricity"
        ):
            known = [n for n, x in by_name.items() if x.input_class.REGISTER]
            raise SettingsError(
                f"{where}: expected the name of a meter with a register input "
                f"(sml, d0, p1) in METERS; there is {', '.join(known) or 'none'}"
            )


def _fed_meters(meters: List[MeterSetup]) -> List[MeterSetup]:
    """The meters an input reads besides its own (P1's gas and water)."""
    out: List[MeterSetup] = []
    fed = FedInput
    for m in meters:
        o = m.input_options
        for key, kind in (("gas_meter", "gas"), ("water_meter", "water")):
            name = o.get(key)
            if not name:
                continue
            problem = _check_name(name)
            if problem:
                raise SettingsError(f"INPUT[{key!r}] = {name!r}: {problem}")
            config = MeterConfig(
                name=name,
                pulses_per_kwh=REGISTER_UNITS,
                debounce_ms=0.0,
                # m3/h: a sub-meter's values come checked, an hour apart
                max_power_w=1e6,
                min_pulse_ms=0.0,
                max_pulse_ms=0.0,
                estimate_fall=0.0,
                kind=kind,
            )
            options = {"backend": "fed", "from": m.config.name}
            note = f"{kind} on the P1 telegram of meter {m.config.name}"
            out.append(MeterSetup(config, fed, options, None, note))
    return out


def _input(where: str, given: Any):
    """(backend class, its checked settings, which backend and why)."""
    if not isinstance(given, dict):
        raise SettingsError(f"{where} = {show(given)}: expected a dict")
    backend = given.get("backend", DEFAULT_BACKEND)
    cls = backend_class(backend, where)
    owner = f"backend {backend!r}"
    values = validate(where, {"backend": backend, **given}, cls.OPTIONS, owner)
    resolve = getattr(cls, "resolve", None)
    if resolve is None:
        return cls, values, f"{where}['backend'] = {backend!r}"
    backend, options, why = resolve(values)  # 'auto' picks a real backend
    cls = backend_class(backend, where)
    return cls, validate(where, options, cls.OPTIONS, owner), why


def _sink(where: str, given: Any) -> SinkSetup:
    if not isinstance(given, dict):
        raise SettingsError(f"{where} = {show(given)}: expected a dict")
    if "type" not in given:
        raise SettingsError(f"{where}['type'] is missing: expected a sink type")
    cls = sink_class(given["type"], where)
    values = validate(
        where, given, {**COMMON_OPTIONS, **cls.OPTIONS}, f"sink type {given['type']!r}"
    )
    own = {k: v for k, v in values.items() if k in cls.OPTIONS}
    return SinkSetup(
        name=values["name"] or values["type"],
        cls=cls,
        options=own,
        batch_size=values["batch_size"],
        flush_interval_s=values["flush_interval_s"],
        retry_max_s=values["retry_max_s"],
    )


def _secrets(sinks: List[SinkSetup]) -> List[str]:
    found = []
    for sink in sinks:
        for key, option in sink.cls.OPTIONS.items():
            value = sink.options.get(key)
            values = value.values() if isinstance(value, dict) else [value]
            if option.secret:
                found += [v for v in values if isinstance(v, str) and v]
    return found


def parse(values: Dict[str, Any], path: str) -> Settings:
    """Check a settings namespace and build Settings (SettingsError if wrong)."""
    unknown = sorted(set(values) - TOP_LEVEL)
    if unknown:
        raise SettingsError(
            f"{unknown[0]}: unknown setting in {path}; expected one of: "
            + ", ".join(sorted(TOP_LEVEL))
        )
    leds = validate("LEDS", values.get("LEDS") or {}, LEDS_OPTIONS)

    meters: List[MeterSetup] = []
    if "METERS" in values and leds["detect"] is not None:
        raise SettingsError(
            f"LEDS['detect'] = {leds['detect']!r}: with METERS each meter has "
            "its own 'detect_led'; set those and leave LEDS['detect'] out"
        )
    if "METERS" in values:
        if "METER" in values or "INPUT" in values:
            raise SettingsError(
                "METERS: set either METERS (several meters) or METER and INPUT "
                "(one meter), not both"
            )
        given = values["METERS"]
        if not isinstance(given, (list, tuple)) or not given:
            raise SettingsError(f"METERS = {show(given)}: expected a non-empty list")
        for i, entry in enumerate(given):
            where = f"METERS[{i}]"
            if not isinstance(entry, dict):
                raise SettingsError(f"{where} = {show(entry)}: expected a dict")
            own = {k: v for k, v in entry.items() if k not in METERS_EXTRA}
            extra = validate(
                where,
                {k: v for k, v in entry.items() if k in METERS_EXTRA},
                METERS_EXTRA,
            )
            cls, opts, note = _input(f"{where}['input']", extra["input"])
            config = _meter(where, own)
            if cls.REGISTER:
                config = _register_meter(where, config, own)
            compare = None
            if extra["register_meter"] is not None:
                compare = Compare(
                    extra["register_meter"],
                    float(extra["drift_warn_pulses_per_day"]),
                    float(extra["drift_check_s"]),
                    extra["auto_rebase"],
                )
            meters.append(
                MeterSetup(config, cls, opts, extra["detect_led"], note, compare)
            )
    else:
        cls, opts, note = _input("INPUT", values.get("INPUT", {}))
        config = _meter("METER", values.get("METER", {}))
        if cls.REGISTER:
            config = _register_meter("METER", config, values.get("METER", {}))
        meters.append(MeterSetup(config, cls, opts, leds["detect"], note))
    meters += _fed_meters(meters)
    names = [m.config.name for m in meters]
    for name in names:
        if names.count(name) > 1:
            raise SettingsError(f"METERS: meter name {name!r} is used twice")
    _check_compare(meters)
    _check_pins(meters, leds["ready"])

    data_dir = values.get("DATA_DIR", DEFAULT_DATA_DIR)
    data_dir = _path("DATA_DIR", data_dir)

    given_sinks = values.get("SINKS", [])
    if not isinstance(given_sinks, (list, tuple)):
        raise SettingsError(f"SINKS = {show(given_sinks)}: expected a list of dicts")
    sinks = [_sink(f"SINKS[{i}]", s) for i, s in enumerate(given_sinks)]
    for i, sink in enumerate(sinks):
        sink.cls.check(f"SINKS[{i}]", sink.options, names)
    sink_names = [s.name for s in sinks]
    for i, name in enumerate(sink_names):
        if sink_names.index(name) != i:
            raise SettingsError(
                f"SINKS[{i}]['name'] = {name!r}: two sinks share this name; give "
                "each sink of the same type its own 'name' (it keys the "
                "sink's position in the journal)"
            )

    _check_sink_paths(sinks)

    return Settings(
        path=path,
        meters=meters,
        data_dir=data_dir,
        sinks=sinks,
        ready_led=leds["ready"],
        blink_ms=float(leds["blink_ms"]),
        pidfile=_optional_path("PIDFILE", values.get("PIDFILE")),
        logfile=_optional_path("LOGFILE", values.get("LOGFILE")),
        log_level=_choice(
            "LOG_LEVEL",
            values.get("LOG_LEVEL", "INFO"),
            ("DEBUG", "INFO", "WARNING", "ERROR"),
        ),
        retention_days=_number(
            "RETENTION_DAYS", values.get("RETENTION_DAYS", 90), 0, 36500
        ),
        drain_timeout_s=_number(
            "DRAIN_TIMEOUT_S", values.get("DRAIN_TIMEOUT_S", 60), 0, 86400
        ),
        commit_interval_s=_number(
            "COMMIT_INTERVAL_S",
            values.get("COMMIT_INTERVAL_S", DEFAULT_COMMIT_INTERVAL_S),
            0,
            60,
        ),
        secrets=_secrets(sinks),
        metrics=parse_metrics(values.get("METRICS")),
        web=parse_web(values.get("WEB")),
    )


# Header pin (BOARD numbering) -> BCM GPIO, for the 40-pin header.
BOARD_TO_BCM = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23,
    18: 24, 19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5,
    31: 6, 32: 12, 33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip


def _gpio_key(options: Dict[str, Any], pin: int) -> Optional[tuple]:
    """What names one GPIO for a backend: BCM number, or chip and line."""
    backend = options["backend"]
    if backend == "rpigpio":
        if options["numbering"] == "board":
            return ("bcm", BOARD_TO_BCM.get(pin, -pin))
        return ("bcm", pin)
    if backend == "gpiod":
        from inputs.libgpiod import chip_path  # "0", "gpiochip0": one chip

        return ("gpiod", chip_path(options["chip"]), pin)
    return None  # simulated and replayed meters have no GPIO


def _check_pins(meters: List[MeterSetup], ready: Optional[int]) -> None:
    """No GPIO used twice: two inputs on one line, or an LED on an input."""
    inputs: Dict[tuple, str] = {}
    for m in meters:
        o = m.input_options
        pin = o.get("pin", o.get("line", -1))
        key = _gpio_key(o, pin)
        if key is None:
            continue
        if key in inputs:
            raise SettingsError(
                f"meter {m.config.name!r} reads GPIO {pin}, which meter "
                f"{inputs[key]!r} reads already; give each meter its own pin"
            )
        inputs[key] = m.config.name
    leds = [
        (f"the detect LED of meter {m.config.name!r}", m, m.detect_led) for m in meters
    ]
    leds.append(("LEDS['ready']", meters[0], ready))  # on the first input's GPIO
    for what, m, pin in leds:
        key = None if pin is None else _gpio_key(m.input_options, pin)
        if key in inputs:
            raise SettingsError(
                f"{what} = {pin}: that GPIO is the input of meter "
                f"{inputs[key]!r}; an LED needs a pin of its own"
            )


def _check_sink_paths(sinks: List[SinkSetup]) -> None:
    """Two sinks writing one file would write every row twice."""
    seen: Dict[str, int] = {}
    for i, sink in enumerate(sinks):
        option = sink.cls.OPTIONS.get("path")
        path = sink.options.get("path")
        if option is None or option.kind != "path" or not isinstance(path, str):
            continue  # InfluxDB's 'path' is part of a URL
        key = os.path.realpath(path)
        if key in seen:
            raise SettingsError(
                f"SINKS[{i}]['path'] = {path!r}: SINKS[{seen[key]}] writes that "
                "file already; give each sink a file of its own"
            )
        seen[key] = i


def _path(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise SettingsError(
            f"{name} = {show(value)}: expected a directory path (without NUL bytes)"
        )
    return os.path.abspath(os.path.expanduser(value))


def _optional_path(name: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise SettingsError(
            f"{name} = {show(value)}: expected a file path (without NUL bytes) or None"
        )
    return os.path.abspath(os.path.expanduser(value))


def _choice(name: str, value: Any, choices) -> str:
    if value not in choices:
        raise SettingsError(
            f"{name} = {show(value)}: expected one of " + ", ".join(map(repr, choices))
        )
    return value


def _number(name: str, value: Any, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not low <= value <= high:  # NaN fails the range too
        raise SettingsError(
            f"{name} = {show(value)}: expected a number from {low} to {high}"
        )
    return float(value)


def load(
    path: str,
    strict: Optional[bool] = None,
    service_uid: Optional[int] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> Settings:
    """Check, run and parse the settings file. A file others could change
    (trust_problem) is refused when `strict` (a service: detached, or run as
    root, the default then), else said through `warn` (stderr by default)."""
    uids = [os.geteuid()] + ([service_uid] if service_uid is not None else [])
    problem = trust_problem(path, uids)
    if problem:
        if strict or (strict is None and os.geteuid() == 0):
            raise SettingsError(problem + "; power refuses to run it as a service")
        (warn or _warn)(problem)
    return parse(read_module(path, warn), os.path.abspath(path))


def _warn(text: str) -> None:
    print(f"power.py: warning: {text}", file=sys.stderr)


def with_input(settings: Settings, backend: str, options: Dict[str, Any]) -> Settings:
    """Replace every meter's input (the --simulate and --replay options)."""
    meters = []
    several = len(settings.meters) > 1
    for m in settings.meters:
        cls = backend_class(backend, "INPUT")
        given = {"backend": backend, **options}
        if several and "meter" in cls.OPTIONS:
            given["meter"] = m.config.name  # each meter takes its own CSV rows
        values = validate("command line", given, cls.OPTIONS)
        note = f"--{backend.replace('simulated', 'simulate')}"
        meters.append(
            replace(m, input_class=cls, input_options=values, input_note=note)
        )
    return replace(settings, meters=meters)


def with_speed(settings: Settings, speed: float) -> Settings:
    """Set every meter's speed (--speed alone), checked as a setting is."""
    meters = []
    for m in settings.meters:
        if "speed" not in m.input_class.OPTIONS:
            raise SettingsError(
                f"--speed {speed:g}: only a simulated or replayed meter has a "
                f"speed, and meter {m.config.name!r} reads "
                f"{m.input_options['backend']!r}; add --simulate or --replay"
            )
        given = {**m.input_options, "speed": speed}
        values = validate("command line", given, m.input_class.OPTIONS)
        meters.append(replace(m, input_options=values))
    return replace(settings, meters=meters)
