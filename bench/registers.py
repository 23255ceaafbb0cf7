"""CPU per SML frame and per DSMR P1 telegram (the parser and the register
meter, as the reading thread and the monitor run them), and the peak memory
of a daemon reading a register input through a real pseudo-terminal.

    .venv/bin/python bench/registers.py

Frames are built as the tests build them (tests/meterframes.py).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import meterframes as mf  # noqa: E402

from core.meter import MeterConfig  # noqa: E402
from core.regmeter import RegisterMeter  # noqa: E402
from inputs.p1 import P1Parser  # noqa: E402
from inputs.sml import SmlParser  # noqa: E402

N = 2000


def per_frame(parser, frames) -> float:
    """CPU seconds per frame: parsed, and taken by a register meter."""
    meter = RegisterMeter(MeterConfig(name="grid", pulses_per_kwh=1000.0), every_s=0)
    start = time.process_time()
    for i, data in enumerate(frames):
        for frame, _, _ in parser.feed(data):
            if frame is not None:
                meter.edge(i * 1_000_000_000, 1.7e9 + i, frame)
    return (time.process_time() - start) / len(frames)


def peak_rss_mib(backend: str, frames) -> float:
    """A daemon (file sink) fed frames through a pty for a while: its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        master, slave = os.openpty()
        settings = Path(tmp) / "settings.py"
        settings.write_text(
            f"METER = {{'name': 'grid'}}\n"
            f"INPUT = {{'backend': {backend!r}, 'device': {os.ttyname(slave)!r}, "
            "'every_s': 1}\n"
            f"DATA_DIR = {tmp + '/data'!r}\n"
            f"SINKS = [{{'type': 'file', 'path': {tmp + '/data/power.csv'!r}}}]\n"
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "src" / "power.py"),
                "--settings",
                str(settings),
                "--nodaemon",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        for data in frames[:300]:
            os.write(master, data)
            time.sleep(0.01)
        time.sleep(2)
        with open(f"/proc/{proc.pid}/status") as f:
            peak = next(int(x.split()[1]) for x in f if x.startswith("VmHWM"))
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        os.close(master)
        os.close(slave)
        return peak / 1024


def main() -> None:
    sml = [mf.sml_file(10_000_000.0 + i, 5_000.0, 300 + i % 7) for i in range(N)]
    p1 = [
        mf.p1_telegram(
            (1000.0 + i / 1000, 500.0),
            (20.0, 10.0),
            (0.3, 0.0),
            gas=("240501110000S", 100.0),
        )
        for i in range(N)
    ]
    sml_us = per_frame(SmlParser(), sml) * 1e6
    p1_us = per_frame(P1Parser(None), p1) * 1e6
    print(f"SML frame ({len(sml[0])} bytes): {sml_us:.0f} µs CPU")
    print(f"P1 telegram ({len(p1[0])} bytes): {p1_us:.0f} µs CPU")
    print(f"peak RSS, daemon with an sml input: {peak_rss_mib('sml', sml):.1f} MiB")
    print(f"peak RSS, daemon with a p1 input: {peak_rss_mib('p1', p1):.1f} MiB")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"(this benchmark's own peak RSS: {usage.ru_maxrss / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
