"""INPUT backend 'auto': which backend and chip it picks, and why.

On a real GPIO chip (gpio-sim) the choice of gpiod and of the header chip by
its label is tested in tests/vm/test_real_chip.py; here, the choice on a
machine without GPIO (like this one), the CLI's reporting, and the chip
search against the fake gpiod's chips and labels.
"""

from __future__ import annotations

import pytest
from conftest import import_fake

from core.options import SettingsError
from inputs import auto


@pytest.fixture
def no_gpio_chips():
    if auto.gpio_chips():
        pytest.skip("this machine has GPIO chips")


def test_default_backend_is_auto_and_says_why(ws, no_gpio_chips):
    ws.write(input_={"pin": 24})
    done = ws.power("--status", "--pidfile", str(ws.pidfile))
    assert done.returncode == 3, done.stderr
    assert (
        "input of meter house: auto: RPi.GPIO pin 24 (BCM), because there is no "
        "GPIO character device (/dev/gpiochip*)" in done.stdout
    )  # and gpiod is not installed either
    assert "and the gpiod module is not installed" in done.stdout


def test_auto_without_chips_runs_rpigpio(ws, no_gpio_chips):
    # RPi.GPIO is not installed here: the run stops with rpigpio's message.
    ws.write(input_={"backend": "auto", "pin": 24})
    done = ws.power("--nodaemon")
    assert done.returncode == 2
    assert "needs the RPi.GPIO module" in done.stderr
    assert "Traceback" not in done.stderr


def test_auto_with_a_chip_needs_gpiod(ws):
    ws.write(input_={"backend": "auto", "pin": 24, "chip": "gpiochip4"})
    done = ws.power("--nodaemon")
    assert done.returncode == 2
    assert "INPUT['chip'] = 'gpiochip4'" in done.stderr
    assert "pip install gpiod" in done.stderr


def test_auto_keys_are_checked(ws):
    ws.write(input_={"backend": "auto", "pin": 24, "numbering": "board"})
    done = ws.power("--nodaemon")
    assert done.returncode == 2
    assert "INPUT['numbering']: unknown setting of backend 'auto'" in done.stderr


@pytest.fixture
def gpiod(monkeypatch):
    fake = import_fake(monkeypatch, "gpiod", "gpiod")
    yield fake
    fake._fake_reset()


def test_header_chip_found_by_label_among_several(gpiod, tmp_path):
    chips = [
        gpiod._fake_chip(str(tmp_path / "gpiochip0"), 32, label="gpio-brcmstb"),
        gpiod._fake_chip(str(tmp_path / "gpiochip1"), 2, label="raspberrypi-exp"),
        gpiod._fake_chip(str(tmp_path / "gpiochip4"), 54, label="pinctrl-rp1"),
    ]
    path, why = auto.header_chip(gpiod, chips)
    assert path == chips[2]
    assert why == "label 'pinctrl-rp1': the Raspberry Pi's GPIO header"


def test_a_single_chip_is_used_whatever_its_label(gpiod, tmp_path):
    chip = gpiod._fake_chip(str(tmp_path / "gpiochip0"), 8, label="gpio-mockup")
    assert auto.header_chip(gpiod, [chip]) == (
        chip,
        "label 'gpio-mockup': the only GPIO chip",
    )


def test_several_chips_and_no_header_asks_for_chip(gpiod, tmp_path):
    chips = [
        gpiod._fake_chip(str(tmp_path / "gpiochip0"), 8, label="one"),
        gpiod._fake_chip(str(tmp_path / "gpiochip1"), 8, label="two"),
    ]
    with pytest.raises(SettingsError) as caught:
        auto.header_chip(gpiod, chips)
    message = str(caught.value)
    assert "several GPIO chips (gpiochip0 'one', gpiochip1 'two')" in message
    assert "set INPUT['chip']" in message


def test_unreadable_chips_are_left_to_the_start_to_explain(gpiod, tmp_path):
    chips = [
        gpiod._fake_chip(str(tmp_path / "gpiochip0"), 8, label="one"),
        gpiod._fake_chip(str(tmp_path / "gpiochip1"), 54, accessible=False),
    ]
    path, why = auto.header_chip(gpiod, chips)
    assert path == chips[1]
    assert "no permission" in why


def test_chips_in_number_order():
    paths = ["/dev/gpiochip10", "/dev/gpiochip2", "/dev/gpiochip0"]
    assert sorted(paths, key=auto._chip_number) == [
        "/dev/gpiochip0",
        "/dev/gpiochip2",
        "/dev/gpiochip10",
    ]


def test_off_a_pi_the_error_says_auto_chose_rpigpio_and_why(tmp_path):
    """No GPIO character device and no gpiod here: 'auto' takes RPi.GPIO,
    which cannot run; the message says it was auto's choice and why."""
    import glob
    import subprocess
    import sys

    from conftest import POWER

    if glob.glob("/dev/gpiochip*"):
        pytest.skip("this machine has a GPIO character device")
    settings = tmp_path / "settings.py"
    settings.write_text(f"DATA_DIR = {str(tmp_path / 'data')!r}\n")
    res = subprocess.run(
        [sys.executable, str(POWER), "--settings", str(settings), "--nodaemon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith("power.py: INPUT['backend'] = 'auto' chose RPi.GPIO")
    assert "because there is no GPIO character device" in line
    assert "works only on a Raspberry Pi 1 to 4" in line
