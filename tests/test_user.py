"""--user: started as root, the daemon runs as an ordinary user with that
user's groups (the way a Pi's gpio group gives it the GPIO device)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, pid_alive, power_cmd, read_csv, wait_for, write_settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch")
NOBODY = pwd.getpwnam("nobody")


def ids(pid: int):
    """Real and effective uid, and the groups, of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["Uid"][0]), int(fields["Uid"][1]), fields["Groups"]


@pytest.fixture
def shared_dir():
    """A directory any user can enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="power-user-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def settings(base: Path) -> Path:
    data = base / "data"  # not there yet: power makes it for the user
    return write_settings(
        base / "settings.py",
        METER={"name": "house"},
        INPUT={"backend": "simulated", "watts": 3600, "speed": 20},
        DATA_DIR=str(data),
        SINKS=[{"type": "file", "path": str(data / "power.csv")}],
    )


def test_daemon_drops_to_the_user(shared_dir):
    path = settings(shared_dir)
    data = shared_dir / "data"
    res = subprocess.run(
        power_cmd("--settings", str(path), "--user", "nobody"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    pid = int((data / "power.pid").read_text())
    try:
        assert ids(pid)[:2] == (NOBODY.pw_uid, NOBODY.pw_uid)
        wait_for(
            lambda: (
                (data / "power.csv").exists() and len(read_csv(data / "power.csv")) > 5
            )
        )
        for name in ("power.csv", "journal.sqlite3", "power.pid"):
            assert (data / name).stat().st_uid == NOBODY.pw_uid, name
        assert data.stat().st_uid == NOBODY.pw_uid
    finally:
        killed = subprocess.run(
            power_cmd("--settings", str(path), "--kill"), capture_output=True, text=True
        )
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert killed.returncode == 0, killed.stderr
    assert not (data / "power.pid").exists()  # the user could remove it


def test_foreground_drops_to_the_user(shared_dir):
    path = settings(shared_dir)
    proc = subprocess.Popen(
        power_cmd("--settings", str(path), "--nodaemon", "--user", "nobody"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline()  # a first reading: it runs
        assert ids(proc.pid)[:2] == (NOBODY.pw_uid, NOBODY.pw_uid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_a_directory_the_user_cannot_write_is_refused(shared_dir):
    # A DATA_DIR that was there already is not taken over: root keeps it,
    # and power says what to do instead of failing after the switch.
    path = settings(shared_dir)
    (shared_dir / "data").mkdir()
    res = subprocess.run(
        power_cmd("--settings", str(path), "--nodaemon", "--user", "nobody"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert "not writable by nobody" in res.stderr and "chown nobody" in res.stderr
    assert (shared_dir / "data").stat().st_uid == 0


def test_a_shared_pidfile_directory_is_not_taken_over(shared_dir):
    path = settings(shared_dir)
    shared = shared_dir / "run"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: anyone may create files
    other = shared / "other-daemon.pid"
    other.write_text("1\n")
    proc = subprocess.Popen(
        power_cmd(
            "--settings", str(path), "--nodaemon", "--user", "nobody",
            "--pidfile", str(shared / "power.pid"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert shared.stat().st_uid == 0 and other.stat().st_uid == 0


def test_unknown_user_and_non_root_are_refused(shared_dir):
    path = settings(shared_dir)
    res = subprocess.run(
        power_cmd("--settings", str(path), "--nodaemon", "--user", "no-such-user-x"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2 and "no such user" in res.stderr
    # As an ordinary user, switching to another user is refused (exit 2).
    for name in ("service/account.py", "core/options.py"):
        (shared_dir / name).parent.mkdir(exist_ok=True)
        (shared_dir / name).write_text((ROOT / "src" / name).read_text())
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from service import account\n"
        "try:\n    account.resolve('root')\n"
        "except account.SettingsError as exc:\n    print(exc); sys.exit(2)\n"
    )
    res = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        + ["/usr/bin/python3", "-c", script, str(shared_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2, res.stderr
    assert "only root can switch to another user" in res.stdout
