"""Property-based fuzzing of the two inputs a user writes by hand: the
settings file and the replay file. Whatever they hold, power answers with
exit 0, or exit 2 and one line naming the problem (exit 3 for --status of
good settings: not running); never a traceback, never a hang, and never a
secret echoed."""

from __future__ import annotations

import string
from pathlib import Path

from conftest import run_power
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config.settings
from core.options import SettingsError
from core.replayfile import ReplayFileError, check_file, count_pulses

SECRET = "S3cretValue-9f2c"
# Every top-level name the loader knows, and one it does not.
TOP = sorted(config.settings.TOP_LEVEL) + ["OTHER"]
KEYS = [
    "name",
    "pulses_per_kwh",
    "debounce_ms",
    "max_power_w",
    "backend",
    "pin",
    "path",
    "speed",
    "watts",
    "type",
    "host",
    "port",
    "database",
    "password",
    "token",
    "tls",
    "batch_size",
    "detect",
    "ready",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["file", "influxdb", "mqtt", "librato", "simulated", "replay", "a\0b", ""]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=12,
)


def _settings_text(tmp: Path, names: dict, raw: str) -> str:
    lines = [
        f"DATA_DIR = {str(tmp / 'data')!r}",
        "INPUT = {'backend': 'simulated', 'watts': 1000}",
    ]
    lines += [f"{k} = {v!r}" for k, v in names.items()]
    # A secret in a sink, as users write them; it must never be echoed.
    lines.append(
        "SINKS = SINKS if 'SINKS' in dir() and isinstance(SINKS, list) else []"
    )
    lines.append(f"SINKS = SINKS + [{{'type': 'influxdb', 'password': {SECRET!r}}}]")
    return "\n".join(lines) + "\n" + raw


raw_lines = st.sampled_from(
    [
        "",
        "x = = 1",
        "exit()",
        "raise SystemExit(5)",
        "raise KeyboardInterrupt",
        f"PASSWORD = {SECRET}",
        f"raise ValueError('password {SECRET}')",
        "import sys; sys.exit(3)",
        "METER['pulses_per_kwh'] = 10**400",
        "DATA_DIR = 'a\\0b'",
        "raise BaseException",
    ]
)


def _check(res, allowed=(0, 2, 3)) -> None:
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert SECRET not in out, out
    assert res.returncode in allowed, (res.returncode, out)
    if res.returncode == 2:
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(names=st.dictionaries(st.sampled_from(TOP), values, max_size=5), raw=raw_lines)
def test_settings_loader_only_ever_raises_settings_error(tmp_path, names, raw):
    path = tmp_path / "settings.py"
    path.write_text(_settings_text(tmp_path, names, raw))
    try:
        config.settings.load(str(path))
    except SettingsError as exc:
        assert SECRET not in str(exc)
        assert "\n" not in str(exc)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(names=st.dictionaries(st.sampled_from(TOP), values, max_size=4), raw=raw_lines)
def test_settings_through_the_cli(tmp_path, names, raw):
    path = tmp_path / "settings.py"
    path.write_text(_settings_text(tmp_path, names, raw))
    res = run_power(
        "--settings", str(path), "--pidfile", str(tmp_path / "p.pid"), "--status"
    )
    _check(res)


line_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(946_684_800, 4_102_444_799).map(lambda t: f"{t:.3f}"),
    st.integers().map(str),
    st.text(alphabet=string.printable + "\0\ufeff\u00e9", max_size=40),
    st.sampled_from(
        [
            "# comment",
            "time,meter,pulses,energy_kwh,power_w,interval_s",
            "2024-05-01T12:00:00.000Z,main,1,0.001,,",
            "9999-12-31T23:59:59.999Z,main,2,0.002,1,1",
            "1e17",
            "1e300",
            "\ufeff1714563000",
        ]
    ),
)
replay_bytes = st.one_of(
    st.lists(line_text, max_size=30).map(lambda ls: "\n".join(ls).encode("utf-8")),
    st.binary(max_size=300),
)


@settings(max_examples=400, deadline=None)
@given(data=replay_bytes)
def test_replay_parser_only_ever_raises_replay_file_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("r") / "p.txt"
    path.write_bytes(data)
    outcomes = []
    for check in (count_pulses, check_file):  # the up-front check agrees
        try:
            check(str(path))
            outcomes.append("ok")
        except ReplayFileError as exc:
            assert str(path) in str(exc)
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=replay_bytes)
def test_replay_through_the_cli(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("cli")
    path = tmp / "p.txt"
    path.write_bytes(data)
    settings_py = tmp / "settings.py"
    settings_py.write_text(
        f"DATA_DIR = {str(tmp / 'data')!r}\n"
        f"SINKS = [{{'type': 'file', 'path': {str(tmp / 'p.csv')!r}}}]\n"
    )
    res = run_power(
        "--settings",
        str(settings_py),
        "--replay",
        str(path),
        "--speed",
        "0",
        "--nodaemon",
        "-q",
        timeout=60,
    )
    _check(res, allowed=(0, 2))
