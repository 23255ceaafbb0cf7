"""Exit codes, as the manual documents them, and the one-line refusal."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILURE = 1  # a runtime failure
EXIT_USAGE = 2  # bad usage or bad settings
EXIT_NOT_RUNNING = 3  # --status, --kill


def fail(code: int, message: str) -> int:
    """Say `message` on stderr as power.py; return `code` to exit with."""
    print(f"power.py: {message}", file=sys.stderr)
    return code
