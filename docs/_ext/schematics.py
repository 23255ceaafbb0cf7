"""Wiring schematics of the sensor circuits, drawn with schemdraw.

The manual's hardware page shows these; they are drawn at build time (so a
change of a pin or a part is one edit here) into docs/_generated/. The
README's picture must be a committed file to render on GitHub, so one of
them is also kept in docs/images/; tests/test_docs.py checks that it equals
what this module draws now. Regenerate it with
``.venv/bin/python docs/_ext/schematics.py``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable, Dict

import schemdraw
import schemdraw.elements as elm

DOCS = pathlib.Path(__file__).resolve().parent.parent
OUT_DIR = DOCS / "_generated" / "schematics"
COMMITTED = {"sensor-b": DOCS / "images" / "sensor-b.svg"}  # the README's

# Pins of the wiring the manual describes (BCM number, header pin).
INPUT = "GPIO 24 (pin 18)"
DETECT = "GPIO 18 (pin 12)"
READY = "GPIO 23 (pin 16)"
V33 = "3V3 (pin 1)"
GND = "GND (pin 6)"


def _drawing() -> schemdraw.Drawing:
    # The SVG backend with plain <text>: no matplotlib, and no text turned
    # into paths (that would change with ziamath installed or not). A white
    # background keeps the black lines visible on a dark page.
    schemdraw.svgconfig.text = "text"
    d = schemdraw.Drawing(canvas="svg", show=False)
    d.config(fontsize=12, unit=2.5, margin=0.6, bgcolor="white")
    return d


def _pi_pin(d: schemdraw.Drawing, at, label: str) -> None:
    """An open terminal where a wire meets a pin of the Pi's header."""
    d.add(elm.Dot(open=True).at(at).label(label, loc="right"))


def sensor_a() -> schemdraw.Drawing:
    """Sensor A: R from 3.3 V over an LDR to ground, C across the LDR; the
    midpoint is the input."""
    d = _drawing()
    d.add(elm.Vdd().label(V33))
    d.add(elm.Resistor().down().label("R", loc="bottom"))
    mid = d.add(elm.Dot())
    d.add(elm.PhotoresistorIEC().down().label("LDR", loc="top"))
    bottom = d.add(elm.Dot())
    d.add(elm.Ground().label(GND, loc="right"))
    d.add(elm.Line().right().at(mid.center).length(2))
    top_c = d.add(elm.Dot())
    d.add(elm.Capacitor().down().label("C", loc="bottom").toy(bottom.center))
    d.add(elm.Line().left().tox(bottom.center))
    end = d.add(elm.Line().right().at(top_c.center).length(2.5)).end
    _pi_pin(d, end, INPUT)
    return d


def _led(d: schemdraw.Drawing, at, pin: str, name: str) -> None:
    """Pin -> resistor -> LED -> ground, drawn from the pin leftwards."""
    _pi_pin(d, at, pin)
    d.add(elm.Resistor().left().at(at).label("330 Ω"))
    d.add(elm.LED().left().label(name, loc="bottom"))
    d.add(elm.Line().left().length(0.5))
    d.add(elm.Ground())


def sensor_b() -> schemdraw.Drawing:
    """Sensor B: R1 from 3.3 V to the collector of the TEPT5700, its emitter
    to ground; R3 in series from the collector to the input. Below, the
    status LEDs L1 and L2, each through a resistor to ground."""
    d = _drawing()
    d.add(elm.Vdd().label(V33))
    # Its value on the left, clear of R3 on the right.
    d.add(elm.Resistor().down().label("R1\n180 kΩ", loc="top"))
    node = d.add(elm.Dot())
    pin = d.add(elm.Resistor().right().at(node.center).label("R3\n1 MΩ")).end
    d.add(elm.Line().right().at(pin).length(1.0))
    x = d.here[0]
    _pi_pin(d, d.here, INPUT)
    d.add(elm.Line().down().at(node.center).length(0.5))
    q = d.add(
        elm.NpnPhoto(circle=True)
        .theta(0)
        .anchor("collector")
        .label("D1\nTEPT5700", loc="left", ofst=0.5)
    )
    d.add(elm.Line().down().at(q.emitter).length(0.5))
    d.add(elm.Ground().label(GND, loc="right"))
    y = d.here[1] - 1.5
    _led(d, (x, y), DETECT, "L1 detect")
    _led(d, (x, y - 2.0), READY, "L2 ready")
    return d


SCHEMATICS: Dict[str, Callable[[], schemdraw.Drawing]] = {
    "sensor-a": sensor_a,
    "sensor-b": sensor_b,
}


def svg(name: str) -> str:
    """The SVG text of one schematic (the same on every run)."""
    return SCHEMATICS[name]().get_imagedata("svg").decode()


def write_all(directory: pathlib.Path) -> None:
    """Write every schematic as NAME.svg; an unchanged file is left alone
    (so Sphinx does not copy it again), a changed one replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in SCHEMATICS:
        path = directory / f"{name}.svg"
        text = svg(name)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        part = path.with_name(f".{name}.{os.getpid()}.svg")
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)


def _on_builder_inited(app) -> None:
    write_all(OUT_DIR)


def setup(app) -> dict:
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    for name, path in COMMITTED.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg(name), encoding="utf-8")
        print(f"wrote {path.relative_to(DOCS.parent)}")
