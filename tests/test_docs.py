"""The manual: it builds with warnings as errors, and what the code can tell
is generated from the code, so it cannot drift from it."""

from __future__ import annotations

import importlib
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def need(module: str):
    """A package of docs/requirements.txt: skipped without it, failed in CI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is missing: make docs installs docs/requirements.txt"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> pathlib.Path:
    """The manual built as make docs builds it (-W), into a temporary dir."""
    need("sphinx")
    need("schemdraw")
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q"]
        + ["-b", "html", "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out / "html"


def test_manual_builds_with_warnings_as_errors(html):
    assert (html / "index.html").is_file()
    for page in ("hardware", "settings", "formats"):
        assert (html / f"{page}.html").is_file()


def test_schematics_are_drawn_into_the_manual(html):
    schematics = importlib.import_module("schematics")
    hardware = (html / "hardware.html").read_text(encoding="utf-8")
    for name in schematics.SCHEMATICS:
        drawn = html / "_images" / f"{name}.svg"
        assert drawn.read_text(encoding="utf-8") == schematics.svg(name)
        assert f"_images/{name}.svg" in hardware


def test_committed_schematic_is_what_the_generator_draws():
    """The README's picture is a committed file (GitHub shows only those):
    it must be what docs/_ext/schematics.py draws now."""
    need("schemdraw")
    schematics = importlib.import_module("schematics")
    for name, path in schematics.COMMITTED.items():
        assert path.read_text(encoding="utf-8") == schematics.svg(name), (
            f"{path.relative_to(ROOT)} is out of date: run "
            ".venv/bin/python docs/_ext/schematics.py and commit it"
        )
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    assert ".. image:: docs/images/sensor-b.svg" in readme


def test_schematics_show_the_documented_parts():
    """The drawings carry the parts and pins the hardware page names."""
    need("schemdraw")
    schematics = importlib.import_module("schematics")
    a = schematics.svg("sensor-a")
    for text in ("LDR", ">C<", ">R<", "GPIO 24 (pin 18)", "3V3 (pin 1)", "GND (pin 6)"):
        assert text in a, text
    b = schematics.svg("sensor-b")
    for text in (
        "TEPT5700",
        "180 kΩ",
        "1 MΩ",
        "330 Ω",
        "GPIO 24 (pin 18)",
        "GPIO 18 (pin 12)",
        "GPIO 23 (pin 16)",
        "L1 detect",
        "L2 ready",
    ):
        assert text in b, text


# Command line ---------------------------------------------------------------------


def _section(page: str, anchor: str) -> str:
    """The HTML of one section: from its label to the next section."""
    start = page.index(f'<span id="{anchor}"></span>')
    end = page.find("<section id=", start + 1)
    return page[start : end if end > 0 else len(page)]


def _accepted_options(parser):
    """Every option string (or positional) the parser accepts."""
    import argparse

    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        yield from action.option_strings or [action.metavar or action.dest]


def test_cli_reference_covers_every_program_and_option(html):
    powerref = importlib.import_module("powerref")
    power = importlib.import_module("power")
    programs = dict(powerref.programs())
    assert set(programs) == {
        "power.py",
        "install_init_script.py",
        *(f"power.py {name}" for name in power.SUBCOMMANDS),
    }
    page = (html / "cli.html").read_text(encoding="utf-8")
    generated = "\n".join(powerref.cli_reference())
    for name, parser in programs.items():
        section = _section(page, powerref.label("cli", name))
        for option in _accepted_options(parser):
            assert f'<span class="pre">{option}</span>' in section, (name, option)
            assert option in generated, (name, option)


def test_pages_show_every_option_of_their_program(html):
    """running, report and service each show their program's whole table."""
    powerref = importlib.import_module("powerref")
    for page, name in (
        ("running", "power.py"),
        ("report", "power.py report"),
        ("service", "install_init_script.py"),
    ):
        text = (html / f"{page}.html").read_text(encoding="utf-8")
        for o in powerref.options(powerref.program(name)):
            assert f'<span class="pre">{o.signature.split()[0]}' in text, (page, o)


def test_a_new_command_appears_in_the_reference_by_itself(monkeypatch):
    import argparse

    power = importlib.import_module("power")
    powerref = importlib.import_module("powerref")

    def watch_parser():
        p = argparse.ArgumentParser(prog="power.py watch")
        p.add_argument("--seconds", metavar="N", type=float, help="how long")
        return p

    commands = {**power.SUBCOMMANDS, "watch": ("sensor set-up", None, watch_parser)}
    monkeypatch.setattr(power, "SUBCOMMANDS", commands)
    text = "\n".join(powerref.cli_reference())
    assert ".. _cli-power-py-watch:" in text
    assert ".. program:: power.py watch" in text
    assert ".. option:: --seconds N" in text


def test_prose_for_an_option_that_does_not_exist_is_refused():
    powerref = importlib.import_module("powerref")
    parser = powerref.program("power.py report")
    assert powerref.cli_table(parser, {"--csv": ["CSV."]})
    with pytest.raises(ValueError, match="--nosuch: not an option of power.py report"):
        powerref.cli_table(parser, {"--nosuch": ["Gone."]})


def test_reference_shows_no_path_of_the_building_machine(html):
    powerref = importlib.import_module("powerref")
    if str(ROOT) == powerref.NEUTRAL_ROOT:
        pytest.skip("this checkout is where the manual's examples put it")
    for page in html.rglob("*.html"):
        assert str(ROOT) not in page.read_text(encoding="utf-8"), page


# Settings -------------------------------------------------------------------------


def _option_tables():
    """(reference section id, table) of every table the settings are checked with."""
    config = importlib.import_module("config.settings")
    sinks_base = importlib.import_module("sinks.base")
    sinks_registry = importlib.import_module("sinks.registry")
    inputs_registry = importlib.import_module("inputs.registry")
    plugins = importlib.import_module("config.plugins")
    yield "settings-reference-meter", config.METER_OPTIONS
    yield "settings-reference-leds", config.LEDS_OPTIONS
    yield "settings-reference-meters", config.METERS_EXTRA
    for name in inputs_registry.BACKENDS:
        cls = plugins.backend_class(name, "INPUT")
        yield f"settings-reference-input-{name}", cls.OPTIONS
    yield "settings-reference-sink-common", sinks_base.COMMON_OPTIONS
    for name in sinks_registry.SINKS:
        cls = plugins.sink_class(name, "SINKS")
        yield f"settings-reference-sink-{name}", cls.OPTIONS


def test_settings_reference_covers_every_setting(html):
    config = importlib.import_module("config.settings")
    powerref = importlib.import_module("powerref")
    page = (html / "settings-reference.html").read_text(encoding="utf-8")
    top = _section(page, "settings-reference-top-level-names")
    for name in config.TOP_LEVEL:
        assert f'<span class="pre">{name}</span>' in top, name
    generated = "\n".join(powerref.settings_reference())
    count = 0
    for anchor, table in _option_tables():
        section = _section(page, anchor)
        for key, option in table.items():
            assert f'<span class="pre">{key}</span>' in section, (anchor, key)
            if option.choices is None:  # the allowed values, as the check says
                assert powerref.escape(option.describe()) in generated, key
            count += 1
    assert count >= 40


def test_settings_pages_cover_their_tables(html):
    """Each sink's and backend's own page has a row for every key."""
    sinks_registry = importlib.import_module("sinks.registry")
    inputs_registry = importlib.import_module("inputs.registry")
    plugins = importlib.import_module("config.plugins")
    for kind, registry, load in (
        ("sinks", sinks_registry.SINKS, plugins.sink_class),
        ("inputs", inputs_registry.BACKENDS, plugins.backend_class),
    ):
        for name in registry:
            path = html / kind / f"{name}.html"
            if not path.exists():
                continue  # a new one is still in the reference
            text = path.read_text(encoding="utf-8")
            for key in load(name, "x").OPTIONS:
                assert f'<span class="pre">{key}</span>' in text, (name, key)


def test_a_new_sink_appears_in_the_reference_by_itself(monkeypatch):
    registry = importlib.import_module("sinks.registry")
    powerref = importlib.import_module("powerref")
    sinks = {**registry.SINKS, "jsonl": "sinks.file:FileSink"}
    monkeypatch.setattr(registry, "SINKS", sinks)
    text = "\n".join(powerref.settings_reference())
    assert ".. _settings-reference-sink-jsonl:" in text
    assert "Sink type ``jsonl``" in text


def test_prose_for_a_setting_that_does_not_exist_is_refused():
    powerref = importlib.import_module("powerref")
    assert powerref.settings_rows("sink influxdb", {"host": ["The server."]})
    with pytest.raises(ValueError, match="hostname: not a setting of sink influxdb"):
        powerref.settings_rows("sink influxdb", {"hostname": ["The server."]})
    with pytest.raises(ValueError, match="METRE: not a setting of top-level"):
        powerref.settings_rows("top-level", {"METRE": ["A typo."]})


def test_secrets_and_defaults_are_shown_as_the_code_has_them():
    powerref = importlib.import_module("powerref")
    text = "\n".join(powerref.settings_rows("sink mqtt", {}))
    assert "never logged" in text  # password is secret=True
    assert '``"localhost"``' in text and "``1883``" in text
    text = "\n".join(powerref.settings_rows("sink librato", {}))
    assert "required" in text  # user and token have no default


# What the sinks write ---------------------------------------------------------------


def test_field_lists_are_what_the_sinks_write(html):
    import json

    csvformat = importlib.import_module("core.csvformat")
    meter = importlib.import_module("core.meter")
    mqtt = importlib.import_module("sinks.mqtt")
    influxdb = importlib.import_module("sinks.influxdb")
    powerref = importlib.import_module("powerref")

    formats = (html / "formats.html").read_text(encoding="utf-8")
    assert csvformat.HEADER in formats
    for field in meter.Reading._fields:
        assert f'<span class="pre">{field}</span>' in formats, field

    page = (html / "sinks" / "mqtt.html").read_text(encoding="utf-8")
    for r in powerref.sample_readings():
        assert list(json.loads(mqtt.state_payload(r))) == list(mqtt.STATE_FIELDS)
    for field in mqtt.STATE_FIELDS:
        assert f'<span class="pre">{field}</span>' in page, field

    sink = influxdb.InfluxDBSink("influxdb", {"measurement": "power", "tags": {}}, None)
    points = sink.points(powerref.sample_readings())
    page = (html / "sinks" / "influxdb.html").read_text(encoding="utf-8")
    assert all(set(p["tags"]) == {influxdb.TAG} for p in points)
    pulse, estimate = points[1]["fields"], points[2]["fields"]
    assert set(pulse) == set(influxdb.FIELDS) - {"estimate", "export_kwh"}
    assert set(estimate) == {"power_w", "estimate"}  # no energy of its own
    assert "power_w" not in points[0]["fields"]  # unknown: left out
    exporting = sink.points([powerref.sample_readings()[1]._replace(export_kwh=1.5)])
    pulse = exporting[0]["fields"]  # a meter with export: the field too
    for name, kind in influxdb.FIELDS.items():
        assert type({**pulse, **estimate}[name]) is kind
        assert f'<span class="pre">{name}</span>' in page, name


def test_options_in_the_manual_keep_their_two_hyphens(html):
    """Copied from the manual, an option must work: "--status", never an en
    dash ("–status" fails as an unrecognized argument)."""
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for dash in ("\u2013", "\u2014"):
            for option in ("status", "kill", "replay", "simulate", "settings"):
                assert f"{dash}{option}" not in text, (page.name, option)


def test_the_running_pages_example_error_is_the_real_one(tmp_path):
    """The manual's example of a settings mistake is what power says."""
    import subprocess
    import sys

    settings = tmp_path / "settings.py"
    settings.write_text(
        f'METER = {{"debounce": 50}}\nDATA_DIR = {str(tmp_path)!r}\n'
        'INPUT = {"backend": "simulated"}\n'
    )
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "power.py"), "--settings", str(settings)]
        + ["--pidfile", str(tmp_path / "p.pid"), "--status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = res.stderr.strip().splitlines()[0]
    page = (ROOT / "docs" / "running.rst").read_text(encoding="utf-8")
    shown = [x.strip() for x in page.splitlines() if "METER['debounce']" in x]
    assert shown and all(line == said for line in shown), (said, shown)


def test_settings_example_names_every_csv_column():
    from core.csvformat import HEADER

    example = (ROOT / "src" / "settings.py.example").read_text(encoding="utf-8")
    assert f"# CSV: {HEADER}" in example


def test_r1s_value_stands_clear_of_r3_in_sensor_b():
    """R1's label on the left of its resistor: on the right, "180 kΩ" ran
    into R3's label above the wire to the input."""
    import re

    need("schemdraw")
    schematics = importlib.import_module("schematics")
    svg = schematics.svg("sensor-b")
    r1 = re.search(r'<text x="([-\d.]+)"[^>]*text-anchor="(\w+)"><tspan[^>]*>R1<', svg)
    r3 = re.search(r'<text x="([-\d.]+)"[^>]*text-anchor="(\w+)"><tspan[^>]*>R3<', svg)
    assert r1 and r3
    assert r1.group(2) == "end" and float(r1.group(1)) < 0 < float(r3.group(1))


def test_the_settings_pages_complete_file_fits_and_is_complete():
    """Its first code block: every top-level name and METER key, in lines
    the manual's width shows whole."""
    config = importlib.import_module("config.settings")
    page = (ROOT / "docs" / "settings.rst").read_text(encoding="utf-8")
    block = page.split(".. code-block:: python", 1)[1].split("\n\n.. _", 1)[0]
    lines = [x for x in block.splitlines() if x.strip()]
    assert max(len(x) for x in lines) <= 66, max(lines, key=len)
    for name in config.TOP_LEVEL - {"METERS"}:  # METERS replaces METER, INPUT
        assert f"   {name} = " in block, name
    for key in config.METER_OPTIONS:
        assert f'"{key}":' in block, key


def test_home_assistant_pages_discovery_example_is_what_the_sink_sends():
    import json

    from core.version import VERSION
    from sinks.mqtt import discovery_configs

    page = (DOCS / "homeassistant.rst").read_text(encoding="utf-8")
    block = page.split("| python3 -m json.tool\n", 1)[1].split("\n\n", 1)[0]
    shown = json.loads(block.replace("\n   ", "\n"))
    sent = discovery_configs("main", "power", "homeassistant", VERSION)
    assert shown == json.loads(sent["homeassistant/sensor/power_main/energy/config"])
