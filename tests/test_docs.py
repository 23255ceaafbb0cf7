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
