"""install_init_script.py and the service files it installs, used for real.

Everything is installed into a temporary --root; the installed init script is
then run as a subprocess and starts, checks and stops a real daemon. Nothing
here changes the machine outside temporary directories: the checks on a real
root (/) run as an unprivileged user, who cannot change anything there.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from conftest import ROOT, Workspace, pid_alive, read_csv, wait_for

INSTALLER = ROOT / "install_init_script.py"
SRC = ROOT / "src"
POWER = SRC / "power.py"
INIT_TEMPLATE = ROOT / "init.d" / "power"
UNIT_TEMPLATE = ROOT / "init.d" / "power.service"
INIT_REL = Path("etc/init.d/power")
UNIT_REL = Path("etc/systemd/system/power.service")
FAST = {"backend": "simulated", "watts": 3600, "speed": 20, "seed": 1}  # 20/s
CI = bool(os.environ.get("CI"))
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
NOBODY_UID = 65534


def run(cmd: List[str], **kw) -> subprocess.CompletedProcess:
    """Run a command to completion, output captured, no stdin."""
    kw.setdefault("timeout", 60)
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def output(res: subprocess.CompletedProcess) -> str:
    """Both streams of a finished command, for assertion messages."""
    return f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


def need_tool(name: str, package: str) -> str:
    """The tool's path; skip without it, but fail if CI is set."""
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    if path:
        return path
    if CI:
        pytest.fail(
            f"{name} is not installed and CI is set (.ci/run installs {package})"
        )
    pytest.skip(f"{name} is not installed (Debian package {package}); CI would fail")


def tree(root: Path) -> Dict[str, Tuple[str, int, bytes]]:
    """Every path under root with its kind, mode and (for files) content."""
    found: Dict[str, Tuple[str, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return found


def unit_values(text: str) -> Dict[str, List[str]]:
    """key -> values of a unit file (sections flattened, comments dropped)."""
    values: Dict[str, List[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return values


def load_installer():
    """install_init_script.py as a module, for testing its checks directly."""
    spec = importlib.util.spec_from_file_location("install_init_script", INSTALLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["install_init_script"] = module
    spec.loader.exec_module(module)
    return module


def read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Staged:
    """A --root to install into, and a workspace the daemon writes to."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        (self.root / "etc").mkdir(parents=True)
        # Not ours: must survive every install and uninstall.
        (self.root / "etc" / "hostname").write_text("raspberrypi\n")
        self.ws = Workspace(tmp)
        self.ws.write(FAST, LOGFILE=str(self.ws.logfile))
        # Like /run/power after a reboot: the init script creates it.
        self.pidfile = tmp / "run" / "power" / "power.pid"
        self.python = sys.executable

    @property
    def init_script(self) -> Path:
        return self.root / INIT_REL

    @property
    def unit(self) -> Path:
        return self.root / UNIT_REL

    def args(self, **override: str) -> List[str]:
        """The installer's options for this staging area; override by name."""
        options = {
            "--root": str(self.root),
            "--python": self.python,
            "--src": str(SRC),
            "--settings": str(self.ws.settings),
            "--pidfile": str(self.pidfile),
            **{f"--{k.replace('_', '-')}": v for k, v in override.items()},
        }
        return [x for k, v in options.items() for x in (k, v)]

    def install(self, *flags: str, env=None, **override: str):
        return run(
            [sys.executable, INSTALLER, *self.args(**override), *flags],
            env=env,
            cwd=self.tmp,
        )

    def uninstall(self, *flags: str, env=None):
        return run(
            [sys.executable, INSTALLER, "--root", self.root, "--uninstall", *flags],
            env=env,
            cwd=self.tmp,
        )

    def service(self, *action: str) -> subprocess.CompletedProcess:
        return run([self.init_script, *action], cwd="/")

    def pid(self) -> Optional[int]:
        return read_pid(self.pidfile)

    def log(self) -> str:
        return self.ws.log()


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[Staged]:
    s = Staged(tmp_path)
    yield s
    pid = s.pid()
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def rows_at_least(csv: Path, n: int) -> int:
    def count() -> int:
        return len(read_csv(csv)) if csv.exists() else 0

    wait_for(lambda: count() >= n, timeout=20)
    return count()


# The init script, driven through its life ---------------------------------------


def test_init_script_lifecycle(staged: Staged) -> None:
    res = staged.install()
    assert res.returncode == 0, output(res)
    script = staged.init_script
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    text = script.read_text()
    assert f"PYTHON='{sys.executable}'" in text
    assert f"POWER='{POWER}'" in text
    assert f"SETTINGS='{staged.ws.settings}'" in text
    assert f"PIDFILE='{staged.pidfile}'" in text
    assert not re.search(r"@[A-Z_]+@", text)  # every placeholder rendered

    status = staged.service("status")
    assert status.returncode == 3, output(status)
    assert "not running" in status.stdout

    start = staged.service("start")
    assert start.returncode == 0, output(start) + staged.log()
    assert "power started (pid" in start.stdout
    pid = staged.pid()
    assert pid and pid_alive(pid)
    rows_at_least(staged.ws.csv, 5)

    again = staged.service("start")
    assert again.returncode == 0, output(again)
    assert "already running" in again.stdout
    assert staged.pid() == pid and pid_alive(pid)

    status = staged.service("status")
    assert status.returncode == 0, output(status)
    assert f"running (pid {pid}" in status.stdout

    restart = staged.service("restart")
    assert restart.returncode == 0, output(restart) + staged.log()
    new = staged.pid()
    assert new and new != pid and pid_alive(new)
    assert not pid_alive(pid)
    before = len(read_csv(staged.ws.csv))
    rows_at_least(staged.ws.csv, before + 5)  # the new daemon writes too

    stop = staged.service("stop")
    assert stop.returncode == 0, output(stop)
    assert not pid_alive(new)
    assert not staged.pidfile.exists()

    stop = staged.service("stop")
    assert stop.returncode == 0, output(stop)

    status = staged.service("status")
    assert status.returncode == 3, output(status)
    assert "not running" in status.stdout
    assert "Traceback" not in staged.log()


def test_init_script_reload_try_restart_and_usage(staged: Staged) -> None:
    assert staged.install().returncode == 0
    # try-restart of a stopped service: nothing to do, success.
    res = staged.service("try-restart")
    assert res.returncode == 0, output(res)
    assert staged.pid() is None
    res = staged.service("reload")
    assert res.returncode == 7, output(res)  # LSB: not running
    res = staged.service("start")
    assert res.returncode == 0, output(res) + staged.log()
    pid = staged.pid()
    # reload: SIGHUP, and power reopens its files (for logrotate).
    res = staged.service("reload")
    assert res.returncode == 0, output(res)
    wait_for(lambda: "reopening" in staged.log(), timeout=10)
    assert staged.pid() == pid and pid_alive(pid)
    res = staged.service("force-reload")  # settings cannot be reloaded: restart
    assert res.returncode == 0, output(res)
    assert staged.pid() not in (None, pid)
    assert staged.service("stop").returncode == 0

    for bad in (["bogus"], [], ["start", "extra"]):
        res = staged.service(*bad)
        assert res.returncode == 2, output(res)
        assert "Usage:" in res.stderr


def test_init_script_without_python_reports_not_installed(staged: Staged) -> None:
    fake = staged.tmp / "gone" / "python"
    assert staged.install(python=str(fake)).returncode == 0  # staging: a warning
    assert staged.service("start").returncode == 5
    assert staged.service("status").returncode == 4
    assert staged.service("stop").returncode == 0


def test_bad_settings_are_refused_by_the_installer_as_the_daemon_would(
    staged: Staged,
) -> None:
    staged.ws.write({"backend": "simulated", "watts": -1})
    for flags in ([], ["--systemd"]):
        res = staged.install(*flags)
        assert res.returncode == 2, output(res)
        assert "INPUT['watts'] = -1: expected a number from 1" in res.stderr
        assert "the service would refuse to start with it" in res.stderr
        assert "next:" not in res.stdout and "Traceback" not in res.stderr
        assert not staged.init_script.exists() and not staged.unit.exists()


def test_init_script_with_bad_settings_is_not_configured(staged: Staged) -> None:
    assert staged.install().returncode == 0
    staged.ws.write({"backend": "simulated", "watts": -1})  # broken afterwards
    res = staged.service("start")
    assert res.returncode == 6, output(res)  # LSB: program is not configured
    assert "watts" in res.stderr and "Traceback" not in res.stderr


# Running as an ordinary user ------------------------------------------------------


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory other users can enter (tmp_path's parent is 700)."""
    path = Path(tempfile.mkdtemp(prefix="power-install-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unprivileged_prefix() -> List[str]:
    """How to run a command as an unprivileged user (nobody if we are root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [
            setpriv,
            f"--reuid={NOBODY_UID}",
            f"--regid={NOBODY_UID}",
            "--clear-groups",
        ]
    runuser = shutil.which("runuser") or shutil.which("runuser", path=SBIN)
    if runuser:
        return [runuser, "-u", "nobody", "--"]
    pytest.skip("running as root without setpriv or runuser to drop privileges")


def python_for(prefix: List[str], base: Path, code: str) -> Optional[str]:
    """A Python the user of `prefix` can run `code` with, or None.

    The venv's own python if it can; else (a venv whose interpreter lives in
    /root, say) a wrapper around the system's python3 of the same version
    with the venv's packages on PYTHONPATH.
    """
    candidates = [sys.executable]
    version = "{}.{}".format(*sys.version_info[:2])
    for system in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.access(system, os.X_OK):
            continue
        res = run([system, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        if res.stdout.strip() == version:
            wrapper = base / "python"
            purelib = sysconfig.get_paths()["purelib"]
            wrapper.write_text(
                f"#!/bin/sh\nPYTHONPATH='{purelib}' exec '{system}' \"$@\"\n"
            )
            wrapper.chmod(0o755)
            candidates.append(str(wrapper))
            break
    for python in candidates:
        # As the installer checks it too: some sandboxes run what access() denies.
        usable = f"import os; assert os.access({python!r}, os.X_OK); {code}"
        if run([*prefix, python, "-c", usable], cwd=base).returncode == 0:
            return python
    return None


DAEMON_PROBE = f"import daemon, daemon.pidfile, lockfile; open({str(POWER)!r}).close()"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_init_script_runs_daemon_as_configured_user(open_tmp: Path) -> None:
    runuser = shutil.which("runuser") or shutil.which("runuser", path=SBIN)
    if not runuser:
        pytest.skip("runuser (util-linux) is not installed")
    python = python_for([runuser, "-u", "nobody", "--"], open_tmp, DAEMON_PROBE)
    if python is None:
        pytest.skip(f"user nobody can run no Python with python-daemon and {POWER}")
    data = open_tmp / "data"
    data.mkdir()
    os.chown(data, NOBODY_UID, NOBODY_UID)
    ws = Workspace(open_tmp)
    ws.logfile = data / "power.log"  # open_tmp itself is not nobody's
    ws.write(FAST, LOGFILE=str(ws.logfile))
    ws.settings.chmod(0o644)
    root = open_tmp / "root"
    root.mkdir()
    pidfile = open_tmp / "run" / "power" / "power.pid"
    res = run(
        [sys.executable, INSTALLER, "--root", root, "--python", python, "--src", SRC]
        + ["--settings", ws.settings, "--pidfile", pidfile, "--user", "nobody"],
        cwd=open_tmp,
    )
    assert res.returncode == 0, output(res)
    script = root / INIT_REL
    assert "RUN_AS='nobody'" in script.read_text()
    try:
        start = run([script, "start"], cwd="/")
        assert start.returncode == 0, output(start) + ws.log()
        pid = read_pid(pidfile)
        assert pid and pid_alive(pid)
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == [str(NOBODY_UID)] * 4
        assert pidfile.parent.stat().st_uid == NOBODY_UID  # made for the user
        rows_at_least(ws.csv, 5)
        assert ws.csv.stat().st_uid == NOBODY_UID
        status = run([script, "status"], cwd="/")
        assert status.returncode == 0, output(status)
        stop = run([script, "stop"], cwd="/")
        assert stop.returncode == 0, output(stop)
        assert not pid_alive(pid)
        assert run([script, "status"], cwd="/").returncode == 3
    finally:
        pid = read_pid(pidfile)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# The systemd unit ------------------------------------------------------------------


def verify(unit: Path) -> Tuple[subprocess.CompletedProcess, List[str]]:
    """systemd-analyze verify; its result and the lines about this unit."""
    analyze = need_tool("systemd-analyze", "systemd")
    res = run([analyze, "verify", "--man=no", unit], env={**os.environ, "LANG": "C"})
    lines = (res.stdout + res.stderr).splitlines()
    about = [line for line in lines if unit.name in line or str(unit) in line]
    return res, about


def test_systemd_unit_verifies(staged: Staged) -> None:
    res = staged.install("--systemd", user="power")
    assert res.returncode == 0, output(res)
    assert not staged.init_script.exists()
    unit = staged.unit
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    values = unit_values(unit.read_text())
    assert values["ExecStart"] == [
        f"{sys.executable} {POWER} --nodaemon --settings {staged.ws.settings} "
        f"--pidfile {staged.pidfile}"
    ]
    assert values["User"] == ["power"]
    assert values["SupplementaryGroups"] == ["gpio"]
    result, complaints = verify(unit)
    assert result.returncode == 0 and not complaints, output(result)

    # The check can fail: a unit whose program is missing does not verify.
    broken = staged.tmp / "broken" / "power.service"
    broken.parent.mkdir()
    broken.write_text(
        unit.read_text().replace(f"ExecStart={sys.executable}", "ExecStart=/no/python")
    )
    result, complaints = verify(broken)
    assert result.returncode != 0 and complaints, output(result)


def test_systemd_unit_is_hardened(staged: Staged) -> None:
    # The settings of a real install, which need not exist when staging.
    res = staged.install(
        "--systemd",
        user="power",
        python="/opt/power/.venv/bin/python",
        src="/opt/power/src",
        settings="/etc/power/settings.py",
        pidfile="/run/power/power.pid",
    )
    assert res.returncode == 0, output(res)
    assert "settings file /etc/power/settings.py not found" in res.stderr
    values = unit_values(staged.unit.read_text())
    expected = {
        "Type": ["simple"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["2"],
        "After": ["time-sync.target network-online.target"],
        "Wants": ["network-online.target time-sync.target"],
        "User": ["power"],
        "SupplementaryGroups": ["gpio"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "PrivateTmp": ["yes"],
        "ProtectHome": ["yes"],
        "StateDirectory": ["power"],  # DATA_DIR /var/lib/power, by default
        "RuntimeDirectory": ["power"],  # the pidfile's /run/power
        "StandardOutput": ["null"],
        "WantedBy": ["multi-user.target"],
    }
    for key, value in expected.items():
        assert values.get(key) == value, (key, values.get(key))
    assert "--nodaemon" in values["ExecStart"][0]
    assert len(values["RestartSec"]) == 1
    assert len(values["Group"]) == 1
    assert "ReadWritePaths" not in values  # all covered by systemd's directories
    assert "PrivateDevices" not in values  # would hide /dev/gpiomem
    assert values["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_systemd_unit_follows_the_settings_paths(staged: Staged) -> None:
    """A clone in /home/pi, data beside it, a CSV in /srv, a log in /var/log."""
    staged.ws.write(
        FAST,
        DATA_DIR="/home/pi/power/var",
        LOGFILE="/var/log/power/power.log",
        SINKS=[
            {"type": "file", "path": "/srv/csv/power.csv"},
            {"type": "file", "name": "all", "path": "/home/pi/power/var/all.csv"},
        ],
    )
    res = staged.install(
        "--systemd",
        python="/home/pi/power/.venv/bin/python",
        src="/home/pi/power/src",
        pidfile="/run/power/power.pid",
    )
    assert res.returncode == 0, output(res)
    values = unit_values(staged.unit.read_text())
    assert values["ProtectHome"] == ["read-only"]
    assert values["ReadWritePaths"] == ["-/home/pi/power/var -/srv/csv"]
    assert values["LogsDirectory"] == ["power"]
    assert values["RuntimeDirectory"] == ["power"]
    assert "StateDirectory" not in values
    assert "User" not in values  # no --user: root
    # The settings file itself is in /tmp here, which a private /tmp hides.
    assert values["PrivateTmp"] == ["no"]
    assert "PrivateTmp=no" in res.stdout


def test_a_page_on_port_80_as_a_user_gets_the_one_capability_it_needs(staged):
    """WEB on port 80, run as a user: the unit lets that user open the port
    (and nothing more); the init.d script, which cannot, refuses it."""
    staged.ws.write(FAST, WEB={"listen": "0.0.0.0:80"})
    res = staged.install("--systemd", user="nobody")
    assert res.returncode == 0, output(res)
    values = unit_values(staged.unit.read_text())
    assert values["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert values["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert "WEB['listen'] port 80" in res.stdout
    assert staged.uninstall().returncode == 0
    res = staged.install(user="nobody")  # init.d
    assert res.returncode == 2, output(res)
    assert "WEB['listen'] port 80 is below 1024" in res.stderr
    assert "--systemd" in res.stderr and "Traceback" not in res.stderr
    # Above 1023, or as root, nothing of the kind.
    staged.ws.write(FAST, WEB={"listen": "0.0.0.0:8080"})
    res = staged.install("--systemd", user="nobody")
    assert res.returncode == 0, output(res)
    assert "AmbientCapabilities" not in staged.unit.read_text()


# Installing, reinstalling, uninstalling ---------------------------------------------


KINDS = [
    pytest.param([], INIT_REL, id="init.d"),
    pytest.param(["--systemd"], UNIT_REL, id="systemd"),
]


@pytest.mark.parametrize("flags, rel", KINDS)
def test_uninstall_leaves_nothing_behind(staged: Staged, flags, rel) -> None:
    before = tree(staged.root)
    res = staged.install(*flags)
    assert res.returncode == 0, output(res)
    assert (staged.root / rel).is_file()
    assert tree(staged.root) != before
    res = staged.uninstall()
    assert res.returncode == 0, output(res)
    assert tree(staged.root) == before
    res = staged.uninstall()
    assert res.returncode == 0, output(res)
    assert "nothing to do" in res.stdout


@pytest.mark.parametrize("flags, rel", KINDS)
def test_installing_twice_is_harmless(staged: Staged, flags, rel) -> None:
    assert staged.install(*flags, user="nobody").returncode == 0
    first = tree(staged.root)
    res = staged.install(*flags, user="nobody")
    assert res.returncode == 0, output(res)
    assert f"unchanged: {staged.root / rel}" in res.stdout
    assert "write " not in res.stdout
    assert tree(staged.root) == first
    # A changed option is a changed file; the old one is replaced, not doubled.
    res = staged.install(*flags, user="daemon")
    assert res.returncode == 0, output(res)
    assert set(tree(staged.root)) == set(first)
    assert tree(staged.root) != first


@pytest.mark.parametrize("flags, rel", KINDS)
def test_dry_run_writes_nothing(staged: Staged, flags, rel) -> None:
    before = tree(staged.tmp)
    res = staged.install("--dry-run", *flags)
    assert res.returncode == 0, output(res)
    assert f"would write {staged.root / rel}" in res.stdout
    assert tree(staged.tmp) == before

    assert staged.install(*flags).returncode == 0
    installed = tree(staged.tmp)
    res = staged.uninstall("--dry-run")
    assert res.returncode == 0, output(res)
    assert f"would remove {staged.root / rel}" in res.stdout
    assert tree(staged.tmp) == installed


def test_staging_touches_nothing_outside_root(staged: Staged) -> None:
    """No update-rc.d, systemctl, useradd or chown: stubs would record them."""
    stubs = staged.tmp.parent / f"{staged.tmp.name}-stubs"
    stubs.mkdir()
    calls = stubs / "calls.log"
    for name in ("update-rc.d", "systemctl", "useradd", "groupadd", "chown", "service"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ.get('PATH', '')}"}
    outside = tree(staged.tmp)
    for flags in ([], ["--systemd"]):
        res = staged.install(*flags, env=env, user="nobody")
        assert res.returncode == 0, output(res)
        assert "nothing enabled" in res.stdout
        res = staged.uninstall(env=env)
        assert res.returncode == 0, output(res)
    assert not calls.exists(), calls.read_text()
    assert tree(staged.tmp) == outside


def test_a_file_it_did_not_install_is_left_alone(staged: Staged) -> None:
    foreign = staged.init_script
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\n# someone else's power script\n")
    res = staged.install()
    assert res.returncode == 2, output(res)
    assert "not installed by this script" in res.stderr
    res = staged.uninstall()
    assert res.returncode == 0, output(res)
    assert "left alone" in res.stderr
    assert foreign.read_text() == "#!/bin/sh\n# someone else's power script\n"


def test_one_kind_at_a_time(staged: Staged) -> None:
    assert staged.install().returncode == 0
    res = staged.install("--systemd")
    assert res.returncode == 2, output(res)
    assert "power is installed as an init.d script" in res.stderr
    # The command it gives works as given: with the --root it was given.
    assert f"install_init_script.py --root {staged.root} --uninstall first" in (
        res.stderr
    )
    assert not staged.unit.exists()
    assert staged.uninstall().returncode == 0
    assert staged.install("--systemd").returncode == 0
    res = staged.install()
    assert "power is installed as a systemd unit" in res.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        ({"root": "/etc/hostname"}, "not a directory"),
        ({"user": "Bad User"}, "expected a user name"),
        ({"pidfile": "/tmp/a b/power.pid"}, "can only carry paths"),
        ({"python": "no-such-python-xyz"}, "no such program on PATH"),
        ({"settings": "BROKEN_SYNTAX"}, "line 1"),
        ({"settings": "BROKEN_IMPORT"}, "failed to run"),
        ({"create_user": ""}, "works only with --root /"),
        ({"bogus": ""}, "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_message(staged: Staged, change, message) -> None:
    if change.get("settings") == "BROKEN_SYNTAX":
        staged.ws.settings.write_text("DATA_DIR = (\n")
        change = {}
    elif change.get("settings") == "BROKEN_IMPORT":
        staged.ws.settings.write_text("import no_such_module_xyz\n")
        change = {}
    flags = [f"--{k.replace('_', '-')}" for k, v in change.items() if v == ""]
    values = {k: v for k, v in change.items() if v != ""}
    res = staged.install(*flags, **values)
    assert res.returncode == 2, output(res)
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (staged.root / "etc" / "init.d").exists()


def test_missing_root_is_created_as_destdir_staging_does(staged: Staged) -> None:
    deep = staged.tmp / "pkg" / "stage"
    res = staged.install(root=str(deep))
    assert res.returncode == 0, output(res)
    assert (deep / INIT_REL).is_file()
    assert (deep / INIT_REL).read_text() == render_expected(staged, deep)


def render_expected(staged: Staged, root: Path) -> str:
    """What the same install into an existing root writes."""
    other = staged.tmp / "existing"
    other.mkdir()
    res = staged.install(root=str(other))
    assert res.returncode == 0, output(res)
    return (other / INIT_REL).read_text()


def test_dry_run_into_a_missing_root_creates_nothing(staged: Staged) -> None:
    deep = staged.tmp / "pkg" / "stage"
    res = staged.install("--dry-run", root=str(deep))
    assert res.returncode == 0, output(res)
    assert f"would write {deep / INIT_REL}" in res.stdout
    assert not (staged.tmp / "pkg").exists()


@pytest.mark.parametrize(
    "name, value",
    [("DATA_DIR", "var"), ("LOGFILE", "var/power.log"), ("SINKS", "var/power.csv")],
)
def test_relative_paths_in_the_settings_are_refused(
    staged: Staged, name: str, value: str
) -> None:
    """The demo's DATA_DIR = 'var' would mean /var for a service: refused,
    and no system directory is ever proposed for a chown."""
    if name == "SINKS":
        staged.ws.write(FAST, SINKS=[{"type": "file", "path": value}])
    else:
        staged.ws.write(FAST, **{name: value})
    for flags in ([], ["--systemd"]):
        res = staged.install(*flags)
        assert res.returncode == 2, output(res)
        assert "relative path" in res.stderr and "absolute path" in res.stderr
        assert f"{value!r}" in res.stderr
        assert "chown" not in res.stderr + res.stdout
        assert "Traceback" not in res.stderr
        assert not staged.init_script.exists() and not staged.unit.exists()


def test_a_system_directory_is_never_proposed_for_chown(capsys) -> None:
    from installer import users as installer

    nobody = pwd.getpwuid(NOBODY_UID).pw_name
    for folder in ("/var", "/var/lib", "/usr/local", "/"):
        assert installer.is_system_dir(folder)
        installer.check_owner(folder, nobody)
        err = capsys.readouterr().err
        assert "system directory" in err and "/var/lib/power" in err, err
        assert "chown" not in err
    assert not installer.is_system_dir("/var/lib/power")
    assert not installer.is_system_dir("/home/pi/power")
    assert installer.is_system_dir("/home/pi")


# Root on a real system ---------------------------------------------------------------


def test_privilege_check_directly() -> None:
    installer = load_installer()
    real = installer.check_options(installer.parse_args(["--root", "/"]))
    with pytest.raises(installer.UsageError, match="needs root"):
        installer.check_privileges(real, euid=1000)
    installer.check_privileges(real, euid=0)
    dry = installer.check_options(installer.parse_args(["--root", "/", "--dry-run"]))
    installer.check_privileges(dry, euid=1000)  # a preview needs no root
    gone = installer.check_options(installer.parse_args(["--root", "/", "--uninstall"]))
    with pytest.raises(installer.UsageError, match="uninstalling from / needs root"):
        installer.check_privileges(gone, euid=1000)


def test_not_root_on_real_system_exits_2(open_tmp: Path) -> None:
    prefix = unprivileged_prefix()
    # A copy other users can read (the checkout may live in /root).
    copy = open_tmp / "installer"
    shutil.copytree(ROOT / "init.d", copy / "init.d")
    shutil.copy2(INSTALLER, copy / INSTALLER.name)
    shutil.copytree(  # the installer's body and the rooms it stands on
        SRC, copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for p in [copy, *copy.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    python = python_for(prefix, open_tmp, "import sys")
    if python is None:
        pytest.skip("the unprivileged user can run no Python here")
    existed = os.path.lexists("/etc/init.d/power")
    res = run([*prefix, python, copy / INSTALLER.name, "--root", "/"], cwd=open_tmp)
    assert res.returncode == 2, output(res)
    assert "needs root" in res.stderr and "sudo" in res.stderr
    assert "Traceback" not in res.stderr
    assert os.path.lexists("/etc/init.d/power") == existed


def test_dry_run_on_real_system_shows_every_action(open_tmp: Path) -> None:
    prefix = unprivileged_prefix()
    if not (shutil.which("update-rc.d") or shutil.which("update-rc.d", path=SBIN)):
        pytest.skip("update-rc.d is not installed: not a Debian system")
    python = python_for(prefix, open_tmp, DAEMON_PROBE)
    if python is None:
        pytest.skip(f"no Python an unprivileged user can run power with ({POWER})")
    ws = Workspace(open_tmp)
    ws.write(FAST)
    ws.settings.chmod(0o644)
    existed = os.path.lexists("/etc/init.d/power")
    res = run(
        [*prefix, python, INSTALLER, "--root", "/", "--dry-run", "--create-user"]
        + ["--python", python, "--src", SRC, "--settings", ws.settings],
        cwd=open_tmp,
    )
    assert res.returncode == 0, output(res)
    out = res.stdout
    assert "would write /etc/init.d/power (mode 755)" in out
    assert "update-rc.d power defaults" in out
    try:
        pwd.getpwnam("power")
    except KeyError:
        assert "useradd --system --user-group" in out and " power\n" in out
        assert f"would create directory {ws.data}" in out
    assert os.path.lexists("/etc/init.d/power") == existed
    assert not ws.data.exists()


# Shell hygiene ---------------------------------------------------------------------


def test_init_script_lsb_header() -> None:
    text = INIT_TEMPLATE.read_text()
    assert text.startswith("#!/bin/sh\n")
    header = text.split("### BEGIN INIT INFO\n", 1)[1].split("### END INIT INFO", 1)[0]
    fields = {}
    for line in header.splitlines():
        key, sep, value = line.lstrip("# ").partition(":")
        if sep and not line.startswith("#  "):
            fields[key] = value.strip()
    assert fields["Provides"] == "power"
    for key in ("Required-Start", "Required-Stop"):
        assert set(fields[key].split()) >= {
            "$remote_fs",
            "$syslog",
            "$network",
            "$time",
        }
    assert fields["Default-Start"] == "2 3 4 5"
    assert fields["Default-Stop"] == "0 1 6"
    assert fields["Short-Description"]
    assert fields["Description"]


def test_init_script_is_shellcheck_clean(staged: Staged) -> None:
    shellcheck = need_tool("shellcheck", "shellcheck")
    assert staged.install(user="nobody").returncode == 0
    for script in (INIT_TEMPLATE, staged.init_script):
        res = run([shellcheck, "--shell=sh", script])
        assert res.returncode == 0, output(res)
