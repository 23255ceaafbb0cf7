"""Booting the GPIO test VM: QEMU, the cached kernel, the host's root over 9p.

The guest runs one program (tests/vm/guest.py) as its init's child and
writes its results into a host directory shared over 9p. Usable from the
tests and from the command line:

    .venv/bin/python tests/vm/vm.py OUTDIR -- PROGRAM ARGS...
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = HERE / "build-kernel.sh"
INIT = HERE / "init.sh"
BUILD_COMMAND = "tests/vm/build-kernel.sh"


def kernel_image() -> Path:
    """Where the kernel for the current config fragment is (or will be)."""
    out = subprocess.run(
        [str(BUILD), "--path"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def qemu() -> Optional[str]:
    return shutil.which("qemu-system-x86_64")


def boot(
    out: Path, program: List[str], timeout: float = 600.0, memory_mb: int = 512
) -> float:
    """Boot the VM, run `program` in it with the results directory `out`
    (the guest's /run/out), return the seconds it took. Raises
    RuntimeError with the console's tail if the guest did not finish."""
    image = kernel_image()
    if not image.exists():
        raise RuntimeError(f"no kernel at {image}; build it with {BUILD_COMMAND}")
    binary = qemu()
    if binary is None:
        raise RuntimeError(
            "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
        )
    out.mkdir(parents=True, exist_ok=True)
    console = out / "console.log"
    append = " ".join(
        [
            "console=ttyS0",
            "root=root",
            "rootfstype=9p",
            "rootflags=trans=virtio,version=9p2000.L,cache=loose,msize=262144",
            "ro",
            "panic=-1",
            "loglevel=4",
            f"init={INIT}",
            "--",
            *program,
        ]
    )
    cmd = [
        binary,
        "-accel", "tcg",
        # Guest time counts instructions (2**0 ns each) and jumps over idle
        # spells: a host that stalls QEMU stalls the guest's clock with it,
        # so a busy host cannot stretch a flash the guest drives.
        "-icount", "shift=0,sleep=off",
        "-cpu", "max",  # the instructions prebuilt wheels (lgpio) may use
        "-m", str(memory_mb),
        # One CPU, as a Pi Zero or 1. With two emulated CPUs on a busy host
        # one can freeze for tens of milliseconds while the other runs on:
        # the kernel then reads an edge's level after the next change, or
        # merges two changes into one edge, which no real board does at a
        # meter's pace (tests/test_meter.py covers the turned-back kinds).
        "-smp", "1",
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-serial", f"file:{console}",
        "-kernel", str(image),
        "-append", append,
        "-virtfs",
        "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={out},mount_tag=out,security_model=none,multidevs=remap",
    ]  # fmt: skip
    start = time.monotonic()
    try:
        subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"the VM did not finish within {timeout:g} s; console:\n" + _tail(console)
        ) from None
    took = time.monotonic() - start
    if not (out / "exit-status").exists():
        raise RuntimeError(
            "the guest program did not finish; console:\n" + _tail(console)
        )
    return took


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console output)"


def main(argv: List[str]) -> int:
    if "--" not in argv or argv.index("--") != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    took = boot(out, argv[2:])
    status = (out / "exit-status").read_text().strip()
    print(f"guest exited {status} after {took:.1f} s; output in {out}")
    return 0 if status == "0" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
