"""Every change the installer makes, printed, and done unless a dry run."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from typing import List

from installer.options import ActionError
from installer.render import under


class Actions:
    """Every change goes through here: printed, and done unless dry_run."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run

    def say(self, what: str) -> None:
        """Print an action, as done or as it would be done."""
        print(("would " if self.dry_run else "") + what, flush=True)

    def run(self, cmd: List[str], check: bool = True) -> int:
        """Run a command (output passes through); ActionError if it fails."""
        self.say("run: " + shlex.join(cmd))
        if self.dry_run:
            return 0
        try:
            code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
        except OSError as exc:
            raise ActionError(f"cannot run {cmd[0]}: {exc.strerror}") from None
        if code != 0 and check:
            raise ActionError(f"'{shlex.join(cmd)}' failed with exit code {code}")
        return code

    def makedirs(self, path: str, mode: int = 0o755) -> List[str]:
        """Create path and missing parents; return those created."""
        missing: List[str] = []
        p = path
        while not os.path.isdir(p) and p not in ("/", ""):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            self.say(f"create directory {d}")
            if not self.dry_run:
                os.mkdir(d, mode)
                os.chmod(d, mode)  # whatever the umask
        return missing

    def write(self, path: str, text: str, mode: int) -> bool:
        """Write text to path atomically with mode; False if already so."""
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == text
            same_mode = stat.S_IMODE(os.stat(path).st_mode) == mode
        except FileNotFoundError:
            same = same_mode = False
        if same and same_mode:
            print(f"unchanged: {path}")
            return False
        if same:
            self.say(f"chmod {mode:o} {path}")
            if not self.dry_run:
                os.chmod(path, mode)
            return True
        self.makedirs(os.path.dirname(path))
        self.say(f"write {path} (mode {mode:o})")
        if self.dry_run:
            return True
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".power.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        return True

    def remove(self, path: str) -> None:
        """Remove a file."""
        self.say(f"remove {path}")
        if not self.dry_run:
            os.remove(path)

    def prune(self, path: str, stop: str) -> None:
        """Remove path's parents that are (or would become) empty, up to stop."""
        gone = {path}
        d = os.path.dirname(path)
        while under(d, stop) and d.rstrip("/") != stop.rstrip("/"):
            try:
                left = set(os.path.join(d, n) for n in os.listdir(d)) - gone
            except OSError:
                return
            if left:
                return
            self.say(f"remove empty directory {d}")
            if not self.dry_run:
                os.rmdir(d)
            gone.add(d)
            d = os.path.dirname(d)

    def chown(self, path: str, user: str, group: str) -> None:
        """Give path to user:group."""
        self.say(f"chown {user}:{group} {path}")
        if not self.dry_run:
            shutil.chown(path, user, group)
