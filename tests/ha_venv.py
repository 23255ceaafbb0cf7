"""Home Assistant in a throwaway virtualenv, for tests/test_ha_discovery.py.

Installed once and kept (about 220 s and 400 MB the first time). The
release is pinned: 2024.3.3 is the newest that installs on Python 3.11
(later ones need 3.12 or 3.13), and a pinned one judges the same way in
every run. .ci/run starts this in the background while it builds the test
kernel; the test installs it itself where nothing did.

    python tests/ha_venv.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HA_VENV = Path("/tmp/power-ha-venv")
HA_RELEASE = "homeassistant==2024.3.3"
INSTALL_TIMEOUT_S = 1200


def ha_python() -> Path:
    """The virtualenv's Python, with Home Assistant installed (once)."""
    python = HA_VENV / "bin" / "python"
    stamp = HA_VENV / ".installed"
    if not stamp.exists() or stamp.read_text().strip() != HA_RELEASE:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(HA_VENV)], check=True
        )
        res = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", HA_RELEASE],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        if res.returncode != 0:
            raise RuntimeError(f"cannot install {HA_RELEASE}:\n{res.stderr[-3000:]}")
        stamp.write_text(HA_RELEASE + "\n")
    return python


if __name__ == "__main__":
    print(ha_python())
