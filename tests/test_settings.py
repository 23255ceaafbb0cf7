"""Settings (src/config/settings.py, src/core/options.py): real settings files
in tmp_path, loaded with config.settings.load and through the real command
line, one mistake at a time. Every mistake must give exit 2 and one message
naming the setting and the value, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import config.settings
from core.meter import MeterConfig
from core.options import SettingsError
from inputs.replay import ReplayInput
from inputs.rpigpio import RpiGpioInput
from inputs.simulated import SimulatedInput
from sinks.base import COMMON_OPTIONS
from sinks.file import FileSink

REPO = Path(__file__).resolve().parent.parent
POWER = REPO / "src" / "power.py"
CLI_TIMEOUT_S = 20


def write_settings(tmp_path: Path, body: str, data_dir: str = "") -> Path:
    """A settings file that is valid apart from `body`, which is appended
    (so it overrides the base names) and may introduce one mistake.

    The base uses a simulated meter, so if a mistake were not caught the
    daemon would run on any machine (and the CLI test time out) rather than
    fail for an unrelated reason such as a missing RPi.GPIO.
    """
    data = data_dir or str(tmp_path / "data")
    base = textwrap.dedent(
        f"""\
        METER = {{"name": "main", "pulses_per_kwh": 1000}}
        INPUT = {{"backend": "simulated", "watts": 1000, "speed": 1}}
        DATA_DIR = {data!r}
        SINKS = [{{"type": "file", "path": {data + "/power.csv"!r}}}]
        """
    )
    path = tmp_path / "settings.py"
    path.write_text(base + textwrap.dedent(body))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(SettingsError) as info:
        config.settings.load(str(path))
    return str(info.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(POWER), *args],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, "POWER_SETTINGS": "/nonexistent/settings.py"},
    )


def cli_error(path: Path, *extra: str) -> str:
    """Run the real CLI on `path`; check exit 2 and one clean stderr line;
    return that line."""
    proc = run_cli("--settings", str(path), "--nodaemon", *extra)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("power.py: ")
    return lines[0]


def both(tmp_path: Path, body: str) -> tuple:
    """The message from config.settings.load and from the CLI; they must agree."""
    path = write_settings(tmp_path, body)
    message = load_error(path)
    line = cli_error(path)
    assert line == "power.py: " + message
    return message, path


# ---------------------------------------------------------------------------
# A valid file first, so the mistakes below are the only difference
# ---------------------------------------------------------------------------


def test_base_settings_are_valid(tmp_path):
    path = write_settings(tmp_path, "")
    s = config.settings.load(str(path))
    assert s.path == str(path)
    assert len(s.meters) == 1
    m = s.meters[0]
    assert m.config == MeterConfig(name="main", pulses_per_kwh=1000.0)
    assert m.input_class is SimulatedInput
    assert m.input_options == {
        "backend": "simulated",
        "watts": 1000,
        "speed": 1,
        "seed": None,
        "width_ms": 50.0,
        "ghosts_per_hour": 0.0,
    }
    assert s.data_dir == str(tmp_path / "data")
    (sink,) = s.sinks
    assert sink.cls is FileSink
    assert sink.name == "file"
    assert sink.options == {"path": str(tmp_path / "data" / "power.csv")}
    assert (sink.batch_size, sink.flush_interval_s, sink.retry_max_s) == (
        1000,
        1.0,
        60.0,
    )
    assert s.log_level == "INFO"
    assert s.retention_days == 90.0
    assert s.pidfile is None


def test_a_full_valid_file_is_typed(tmp_path):
    path = write_settings(
        tmp_path,
        """
        METERS = [
            {"name": "grid", "pulses_per_kwh": 800, "debounce_ms": 20,
             "detect_led": 17, "input": {"backend": "simulated", "watts": 500}},
            {"name": "heat", "input": {"backend": "rpigpio", "pin": 25,
             "numbering": "board", "edge": "rising", "pull": "off"}},
        ]
        del METER, INPUT
        LEDS = {"ready": 23, "blink_ms": 50}
        SINKS = [{"type": "file", "path": "a.csv", "name": "a", "batch_size": 10},
                 {"type": "file", "path": "b.csv", "name": "b",
                  "flush_interval_s": 2, "retry_max_s": 5}]
        LOG_LEVEL = "DEBUG"
        RETENTION_DAYS = 7
        PIDFILE = "/run/power.pid"
        lower_case_helper = "ignored"
        """,
    )
    s = config.settings.load(str(path))
    grid, heat = s.meters
    assert grid.config.name == "grid"
    assert grid.config.pulses_per_kwh == 800.0
    assert grid.config.debounce_ms == 20.0
    assert grid.detect_led == 17
    assert grid.input_class is SimulatedInput
    assert heat.input_class is RpiGpioInput
    assert heat.input_options == {
        "backend": "rpigpio",
        "pin": 25,
        "numbering": "board",
        "edge": "rising",
        "pull": "off",
    }
    assert heat.detect_led is None
    assert s.ready_led == 23
    assert s.blink_ms == 50.0
    assert [x.name for x in s.sinks] == ["a", "b"]
    assert s.sinks[0].batch_size == 10
    assert s.sinks[1].flush_interval_s == 2.0
    assert isinstance(s.sinks[1].flush_interval_s, float)
    assert s.log_level == "DEBUG"
    assert s.retention_days == 7.0
    assert s.pidfile == "/run/power.pid"


# ---------------------------------------------------------------------------
# One mistake at a time
# ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "settings.py"
    message = load_error(path)
    assert str(path) in message
    assert "not found" in message
    assert cli_error(path) == "power.py: " + message


def test_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "settings.py"
    path.write_text('METER = {"name": "main"}\n\nINPUT = {"backend": \n')
    message = load_error(path)
    assert str(path) in message
    assert "line 3" in message
    assert "syntax" in message
    assert cli_error(path) == "power.py: " + message


def test_syntax_error_on_a_later_line(tmp_path):
    path = tmp_path / "settings.py"
    path.write_text("A = 1\nB = 2\nC = 3\nD = = 4\nE = 5\n")
    assert "line 4" in load_error(path)


def test_settings_file_that_raises(tmp_path):
    message, path = both(tmp_path, 'raise RuntimeError("no meter today")\n')
    assert str(path) in message
    assert "RuntimeError" in message
    assert "no meter today" in message


def test_settings_file_with_name_error(tmp_path):
    message, _ = both(tmp_path, "METER = {'pulses_per_kwh': PPK}\n")
    assert "NameError" in message
    assert "PPK" in message


def test_unknown_top_level_name(tmp_path):
    message, path = both(tmp_path, "SINK = []\n")
    assert message.startswith("SINK:")
    assert "unknown setting" in message
    assert "SINKS" in message  # the list of what is expected
    assert str(path) in message


def test_unknown_key_in_meter(tmp_path):
    message, _ = both(tmp_path, 'METER = {"name": "main", "pulses_per_kw": 1000}\n')
    assert message.startswith("METER['pulses_per_kw']")
    assert "unknown setting" in message
    assert "pulses_per_kwh" in message


def test_wrong_type(tmp_path):
    message, _ = both(tmp_path, 'METER = {"pulses_per_kwh": "1000"}\n')
    assert message.startswith("METER['pulses_per_kwh'] = '1000'")
    assert "expected a number" in message


def test_bool_is_not_a_number(tmp_path):
    message, _ = both(tmp_path, 'METER = {"max_power_w": True}\n')
    assert message.startswith("METER['max_power_w'] = True")


def test_out_of_range(tmp_path):
    message, _ = both(tmp_path, 'METER = {"debounce_ms": -1}\n')
    assert message.startswith("METER['debounce_ms'] = -1")
    assert "from 0 to 60000" in message


def test_bad_choice(tmp_path):
    message, _ = both(
        tmp_path, 'INPUT = {"backend": "rpigpio", "pin": 24, "numbering": "wpi"}\n'
    )
    assert message.startswith("INPUT['numbering'] = 'wpi'")
    assert "'bcm'" in message and "'board'" in message


def test_unknown_backend(tmp_path):
    message, _ = both(tmp_path, 'INPUT = {"backend": "gpiozero"}\n')
    assert message.startswith("INPUT['backend'] = 'gpiozero'")
    assert "unknown input backend" in message
    for name in ("rpigpio", "simulated", "replay"):
        assert repr(name) in message


def test_unknown_sink_type(tmp_path):
    message, _ = both(tmp_path, 'SINKS = [{"type": "influx", "host": "x"}]\n')
    assert message.startswith("SINKS[0]['type'] = 'influx'")
    assert "unknown sink type" in message
    assert "'file'" in message


def test_sink_without_type(tmp_path):
    message, _ = both(tmp_path, 'SINKS = [{"path": "x.csv"}]\n')
    assert message.startswith("SINKS[0]['type'] is missing")


def test_sink_missing_its_required_key(tmp_path):
    message, _ = both(tmp_path, 'SINKS = [{"type": "file"}]\n')
    assert message.startswith("SINKS[0]['path'] is missing")
    assert "expected a file path" in message


def test_unknown_key_in_a_sink(tmp_path):
    message, _ = both(
        tmp_path, 'SINKS = [{"type": "file", "path": "x.csv", "paht": "y"}]\n'
    )
    assert message.startswith("SINKS[0]['paht']")
    assert "unknown setting" in message


def test_duplicate_sink_names(tmp_path):
    message, _ = both(
        tmp_path,
        'SINKS = [{"type": "file", "path": "a.csv"},'
        ' {"type": "file", "path": "b.csv"}]\n',
    )
    assert message.startswith("SINKS[1]['name'] = 'file'")
    assert "share" in message


def test_duplicate_explicit_sink_names(tmp_path):
    message, _ = both(
        tmp_path,
        'SINKS = [{"type": "file", "path": "a.csv", "name": "csv"},'
        ' {"type": "file", "path": "b.csv", "name": "csv"}]\n',
    )
    assert message.startswith("SINKS[1]['name'] = 'csv'")


@pytest.mark.parametrize(
    "name",
    ["my meter", "", "a/b", "x" * 65, "main,2", "zähler"],
)
def test_bad_meter_name(tmp_path, name):
    path = write_settings(tmp_path, f"METER = {{'name': {name!r}}}\n")
    message = load_error(path)
    assert message.startswith(f"METER['name'] = {name!r}")
    assert "letters, digits" in message


def test_bad_meter_name_through_cli(tmp_path):
    message, _ = both(tmp_path, "METER = {'name': 'my meter'}\n")
    assert message.startswith("METER['name'] = 'my meter'")


def test_meter_name_with_trailing_newline_is_rejected(tmp_path):
    path = write_settings(tmp_path, "METER = {'name': 'main\\n'}\n")
    message = load_error(path)
    assert message.startswith("METER['name'] = 'main\\n'")


def test_meters_together_with_meter(tmp_path):
    message, _ = both(
        tmp_path,
        'METERS = [{"name": "a", "input": {"backend": "simulated"}}]\n',
    )
    assert message.startswith("METERS:")
    assert "METER" in message and "not both" in message


def test_duplicate_meter_names_in_meters(tmp_path):
    message, _ = both(
        tmp_path,
        """
        del METER, INPUT
        METERS = [{"name": "a", "input": {"backend": "simulated"}},
                  {"name": "a", "input": {"backend": "simulated"}}]
        """,
    )
    assert "'a'" in message and "twice" in message


def test_meters_entry_without_input(tmp_path):
    message, _ = both(
        tmp_path,
        """
        del METER, INPUT
        METERS = [{"name": "a"}]
        """,
    )
    assert message.startswith("METERS[0]['input'] is missing")


def test_meters_entry_with_bad_value_names_its_index(tmp_path):
    message, _ = both(
        tmp_path,
        """
        del METER, INPUT
        METERS = [{"name": "a", "input": {"backend": "simulated"}},
                  {"name": "b", "debounce_ms": "x",
                   "input": {"backend": "simulated"}}]
        """,
    )
    assert message.startswith("METERS[1]['debounce_ms'] = 'x'")


def test_sinks_not_a_list(tmp_path):
    body = 'SINKS = {"type": "influxdb", "password": "hunter2-SECRET"}\n'
    message, _ = both(tmp_path, body)
    assert message.startswith("SINKS = a dict of 2: expected a list")
    assert "hunter2" not in message  # a misplaced dict may hold a secret


def test_log_level_choice(tmp_path):
    message, _ = both(tmp_path, 'LOG_LEVEL = "verbose"\n')
    assert message.startswith("LOG_LEVEL = 'verbose'")
    assert "'DEBUG'" in message


def test_retention_out_of_range(tmp_path):
    message, _ = both(tmp_path, "RETENTION_DAYS = -3\n")
    assert message.startswith("RETENTION_DAYS = -3")


def test_nan_is_not_a_valid_number(tmp_path):
    path = write_settings(tmp_path, "METER = {'pulses_per_kwh': float('nan')}\n")
    message = load_error(path)
    assert message.startswith("METER['pulses_per_kwh'] = nan")


# ---------------------------------------------------------------------------
# DATA_DIR (checked by the CLI before it forks or touches GPIO)
# ---------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_data_dir_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    data = locked / "data"
    data.mkdir()
    data.chmod(0o500)
    try:
        path = write_settings(tmp_path, "", data_dir=str(data))
        config.settings.load(str(path))  # a path is a valid value
        line = cli_error(path)
    finally:
        data.chmod(0o700)
    assert line.startswith(f"power.py: DATA_DIR = {str(data)!r}")
    assert "not writable" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_data_dir_cannot_be_created(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    data = locked / "data"
    try:
        path = write_settings(tmp_path, "", data_dir=str(data))
        line = cli_error(path)
    finally:
        locked.chmod(0o700)
    assert line.startswith(f"power.py: DATA_DIR = {str(data)!r}")
    assert "cannot create" in line
    assert not data.exists()


def test_data_dir_under_a_file(tmp_path):
    # works as root too: nobody can make a directory inside a regular file
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    data = blocker / "data"
    path = write_settings(tmp_path, "", data_dir=str(data))
    line = cli_error(path)
    assert line.startswith(f"power.py: DATA_DIR = {str(data)!r}")
    assert "cannot create" in line


def test_data_dir_empty_string(tmp_path):
    path = tmp_path / "settings.py"
    path.write_text('INPUT = {"backend": "simulated"}\nDATA_DIR = ""\n')
    message = load_error(path)
    assert message.startswith("DATA_DIR = ''")
    assert cli_error(path) == "power.py: " + message


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def test_speed_with_an_rpigpio_input(tmp_path):
    path = write_settings(tmp_path, 'INPUT = {"backend": "rpigpio", "pin": 24}\n')
    config.settings.load(str(path))  # valid settings: the mistake is the flag
    line = cli_error(path, "--speed", "10")
    assert "--speed 10" in line
    assert "'rpigpio'" in line
    assert "'main'" in line


def usage_error(proc: subprocess.CompletedProcess) -> str:
    """argparse errors: exit 2, a usage line and one error line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("usage: power.py")
    errors = [x for x in lines if x.startswith("power.py: error:")]
    assert len(errors) == 1, proc.stderr
    assert lines[-1] == errors[0]
    return errors[0]


def test_simulate_negative(tmp_path):
    path = write_settings(tmp_path, "")
    proc = run_cli("--settings", str(path), "--nodaemon", "--simulate", "-5")
    line = usage_error(proc)
    assert "--simulate -5" in line
    assert "from 1 to 1e6 W" in line


def test_simulate_zero(tmp_path):
    path = write_settings(tmp_path, "")
    proc = run_cli("--settings", str(path), "--nodaemon", "--simulate", "0")
    assert "--simulate 0" in usage_error(proc)


def test_speed_negative(tmp_path):
    path = write_settings(tmp_path, "")
    proc = run_cli("--settings", str(path), "--nodaemon", "--speed", "-1")
    assert "--speed -1" in usage_error(proc)


def test_simulate_not_a_number(tmp_path):
    path = write_settings(tmp_path, "")
    proc = run_cli("--settings", str(path), "--nodaemon", "--simulate", "lots")
    line = usage_error(proc)
    assert "--simulate" in line and "'lots'" in line


def test_speed_nan(tmp_path):
    path = write_settings(tmp_path, "")
    proc = run_cli(
        "--settings", str(path), "--nodaemon", "--simulate", "1000", "--speed", "nan"
    )
    assert "--speed nan" in usage_error(proc)


def test_unknown_cli_flag(tmp_path):
    path = write_settings(tmp_path, "")
    proc = run_cli("--settings", str(path), "--nodaemon", "--frobnicate")
    line = usage_error(proc)
    assert "--frobnicate" in line
    assert "unrecognized" in line


def test_kill_and_status_are_exclusive(tmp_path):
    path = write_settings(tmp_path, "")
    proc = run_cli("--settings", str(path), "--kill", "--status")
    line = usage_error(proc)
    assert "--kill" in line and "--status" in line


def test_settings_error_comes_before_anything_else(tmp_path):
    # --status with bad settings: still exit 2 and the settings message
    path = write_settings(tmp_path, 'METER = {"debounce_ms": -1}\n')
    proc = run_cli("--settings", str(path), "--status")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "power.py: METER['debounce_ms'] = -1: expected a number from 0 to 60000"
    )
    assert not (tmp_path / "data").exists()


def test_power_settings_environment_variable(tmp_path):
    path = write_settings(tmp_path, "SINK = []\n")
    proc = subprocess.run(
        [sys.executable, str(POWER), "--nodaemon"],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, "POWER_SETTINGS": str(path)},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("power.py: SINK: unknown setting in " + str(path))


# ---------------------------------------------------------------------------
# The shipped files
# ---------------------------------------------------------------------------


def test_settings_example_loads_and_describes_the_defaults():
    example = REPO / "src" / "settings.py.example"
    s = config.settings.load(str(example))
    (m,) = s.meters
    # METER as shipped is exactly the defaults
    assert m.config == MeterConfig()
    for key, option in config.settings.METER_OPTIONS.items():
        if key in ("pulses_per_m3", "max_flow_m3h"):  # gas and water only
            assert option.default is None
            continue
        assert getattr(m.config, key) == option.default, key
    # INPUT as shipped is exactly the rpigpio defaults
    assert m.input_class is RpiGpioInput
    assert m.input_options == {
        key: option.default
        for key, option in RpiGpioInput.OPTIONS.items()
        if key != "backend"
    } | {"backend": "rpigpio"}
    assert s.data_dir == config.settings.DEFAULT_DATA_DIR
    assert s.blink_ms == config.settings.LEDS_OPTIONS["blink_ms"].default
    assert s.pidfile is None and s.logfile is None
    assert s.log_level == "INFO"
    assert s.retention_days == 90.0
    assert s.drain_timeout_s == 60.0
    (sink,) = s.sinks
    assert sink.cls is FileSink
    for key, option in COMMON_OPTIONS.items():
        if key not in ("type", "name"):
            assert getattr(sink, key) == option.default, key


def test_settings_example_documents_every_setting():
    text = (REPO / "src" / "settings.py.example").read_text()
    for name in config.settings.TOP_LEVEL:
        assert name in text, name
    for table in (
        config.settings.METER_OPTIONS,
        config.settings.LEDS_OPTIONS,
        RpiGpioInput.OPTIONS,
        SimulatedInput.OPTIONS,
        ReplayInput.OPTIONS,
        COMMON_OPTIONS,
        FileSink.OPTIONS,
    ):
        for key in table:
            if key in ("seed", "meter"):  # optional extras of the test inputs
                continue
            assert f'"{key}"' in text, key


def test_settings_example_runs_as_plain_python():
    example = REPO / "src" / "settings.py.example"
    proc = subprocess.run(
        [sys.executable, str(example)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr


def test_demo_settings_load(monkeypatch):
    monkeypatch.chdir(REPO)
    s = config.settings.load(str(REPO / "demo" / "settings.py"))
    (m,) = s.meters
    assert m.config.name == "demo"
    assert m.config.pulses_per_kwh == 1000.0
    assert m.input_class is SimulatedInput
    assert m.input_options["watts"] == 1500
    assert m.input_options["speed"] == 1
    assert s.data_dir == str(REPO / "var")
    (sink,) = s.sinks
    assert sink.cls is FileSink
    assert sink.options["path"] == str(REPO / "var" / "power.csv")
    assert s.ready_led == 23


def test_led_on_the_input_pin_is_refused(tmp_path):
    path = write_settings(
        tmp_path,
        "INPUT = {'backend': 'rpigpio', 'pin': 24}\n"
        "LEDS = {'detect': 24, 'ready': 23}\n",
    )
    with pytest.raises(SettingsError) as caught:
        config.settings.load(str(path))
    assert "detect LED of meter 'main' = 24" in str(caught.value)


def test_two_meters_on_one_pin_are_refused(tmp_path):
    path = write_settings(
        tmp_path,
        "del METER, INPUT\n"
        "METERS = [{'name': 'a', 'input': {'backend': 'gpiod', 'line': 5}},\n"
        "          {'name': 'b', 'input': {'backend': 'gpiod', 'line': 5}}]\n",
    )
    with pytest.raises(SettingsError) as caught:
        config.settings.load(str(path))
    assert "meter 'b' reads GPIO 5, which meter 'a' reads" in str(caught.value)


def test_board_and_bcm_numbers_of_one_gpio_clash(tmp_path):
    # Header pin 18 is BCM 24.
    path = write_settings(
        tmp_path,
        "INPUT = {'backend': 'rpigpio', 'pin': 18, 'numbering': 'board'}\n"
        "LEDS = {'detect': 18, 'ready': 16}\n",
    )
    with pytest.raises(SettingsError) as caught:
        config.settings.load(str(path))
    assert "the detect LED of meter 'main' = 18" in str(caught.value)
    ok = write_settings(
        tmp_path,
        "METERS = [{'name': 'a', 'input': {'backend': 'gpiod', 'line': 5}},\n"
        "          {'name': 'b', 'input': {'backend': 'gpiod', 'line': 5,\n"
        "                                  'chip': 'gpiochip1'}}]\n"
        "del METER, INPUT\n",
    )
    assert len(config.settings.load(str(ok)).meters) == 2


def test_unknown_keys_are_listed_together_with_their_backend(tmp_path):
    path = write_settings(
        tmp_path,
        "INPUT = {'backend': 'simulated', 'pin': 24, 'edge': 'falling'}\n",
    )
    with pytest.raises(SettingsError) as caught:
        config.settings.load(str(path))
    message = str(caught.value)
    assert message.startswith("INPUT['edge'], INPUT['pin']: unknown settings of")
    assert "backend 'simulated'" in message


def test_pidfile_directory_is_created_or_refused(tmp_path):
    path = write_settings(tmp_path, "")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = run_cli(
        "--settings", str(path), "--nodaemon", "--pidfile", str(blocker / "p.pid")
    )
    assert res.returncode == 2
    assert "cannot create" in res.stderr and "Traceback" not in res.stderr


def test_unusable_log_file_exits_2(tmp_path):
    path = write_settings(tmp_path, "")
    res = run_cli(
        "--settings", str(path), "--nodaemon", "--logfile", "/nonexistent/dir/p.log"
    )
    assert res.returncode == 2
    assert "log file /nonexistent/dir/p.log" in res.stderr
    assert "Traceback" not in res.stderr


def test_mqtt_tls_file_missing_exits_2(tmp_path):
    path = write_settings(
        tmp_path,
        "SINKS = [{'type': 'mqtt', 'tls': {'ca_certs': '/nonexistent/ca.pem'}}]\n",
    )
    with pytest.raises(SettingsError) as caught:
        config.settings.load(str(path))
    assert "tls['ca_certs'] = '/nonexistent/ca.pem': no such file" in str(caught.value)


# ---------------------------------------------------------------------------
# The settings file is code: who may change it, and what it may do
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_a_settings_file_others_can_change_is_refused_to_a_daemon(tmp_path, mode):
    path = write_settings(tmp_path, "")
    path.chmod(mode)
    who = "others" if mode & 0o002 else "its group"
    # Detached, and as root (these tests run as root: the default then).
    for args in ((), ("--nodaemon",)):
        proc = run_cli("--settings", str(path), *args)
        assert proc.returncode == 2, proc.stderr
        assert f"is writable by {who} (mode 0{mode:o})" in proc.stderr
        assert f"chmod go-w {path}" in proc.stderr
        assert "refuses to run it as a service" in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing ran


def test_a_settings_file_of_another_user_is_refused_to_a_daemon(tmp_path):
    path = write_settings(tmp_path, "")
    os.chown(path, 65534, 65534)
    proc = run_cli("--settings", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "belongs to uid 65534, not to root or the user power runs as" in (
        proc.stderr
    )
    # That user is the service's own (--user): fine.
    proc = run_cli("--settings", str(path), "--user", "nobody", "--status")
    assert "belongs to uid" not in proc.stderr


def test_in_the_foreground_as_a_user_a_loose_settings_file_is_warned_about(
    tmp_path,
):
    path = write_settings(tmp_path, "")
    path.chmod(0o666)
    warnings = []
    settings = config.settings.load(str(path), strict=False, warn=warnings.append)
    assert settings.meters[0].config.name == "main"
    assert len(warnings) == 1 and "writable by others" in warnings[0]


def test_a_settings_file_that_ends_the_program_is_a_settings_mistake(tmp_path):
    path = write_settings(tmp_path, "import os\nos._exit(7)\n")
    line = cli_error(path)
    assert "ended the program while it ran (exit status 7)" in line
    path = write_settings(tmp_path, "import os, signal\nos.kill(os.getpid(), 9)\n")
    line = cli_error(path)
    assert "ended the program while it ran (signal 9)" in line


@pytest.mark.parametrize(
    "body",
    [
        'SINKS = [{"type": "mqtt", "password":\n    "Hunter2-secret"}]\n'
        "assert False, SINKS\n",
        'TOKEN = "Hunter2-secret"\nassert len(TOKEN) < 5, TOKEN\n',
        'P = dict(password="Hunter2-secret")\nassert not P, P["password"]\n',
    ],
)
def test_an_assert_message_with_a_secret_is_not_shown(tmp_path, body):
    path = write_settings(tmp_path, body)
    line = cli_error(path)
    assert "Hunter2" not in line
    assert "AssertionError: (message not shown: it may hold a secret)" in line


def test_a_name_that_is_a_setting_but_for_its_case_is_warned_about(tmp_path):
    path = write_settings(tmp_path, f"Data_Dir = {str(tmp_path / 'other')!r}\n")
    warnings = []
    settings = config.settings.load(str(path), warn=warnings.append)
    assert settings.data_dir == str(tmp_path / "data")  # the default stands
    assert len(warnings) == 1
    assert "'Data_Dir' is not a setting and is ignored" in warnings[0]
    assert "did you mean DATA_DIR?" in warnings[0]
    proc = run_cli("--settings", str(path), "--status")
    assert "did you mean DATA_DIR?" in proc.stderr
