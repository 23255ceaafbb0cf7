"""Running as an ordinary user: `--user NAME` when started as root.

GPIO needs no root on Raspberry Pi OS, only membership of the `gpio` group,
so a service started by root (init.d) can drop to its own user. The switch
keeps the user's supplementary groups (initgroups), so `gpio` applies. What
the daemon writes must then belong to that user: DATA_DIR and what is in it,
and the pidfile's directory.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Iterable, Optional

from core.options import SettingsError


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def resolve(name: Optional[str]) -> Optional[Account]:
    """The account to switch to, or None to stay as we are.

    Naming the user we already are is allowed (and a no-op), so an init
    script may pass --user whoever runs it.
    """
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SettingsError(
            f"--user {name!r}: no such user; create it (e.g. 'sudo adduser "
            f"--system --ingroup gpio {name}') or name another"
        ) from None
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise SettingsError(
            f"--user {name!r}: only root can switch to another user; start "
            f"power as {name} instead"
        )
    return Account(name, entry.pw_uid, entry.pw_gid)


def hand_over(account: Account, paths: Iterable[str]) -> None:
    """Give these paths, where they exist, to the account. Only what power
    itself made or writes is ever named here, never a whole directory's
    contents: a shared directory such as /run or /tmp keeps its owners."""
    for path in paths:
        if os.path.lexists(path) and not os.path.islink(path):
            os.chown(path, account.uid, account.gid)


def writable_by(account: Account, path: str) -> bool:
    """Whether the account may create files in the directory `path`."""
    st = os.stat(path)
    if st.st_uid == account.uid:
        return bool(st.st_mode & 0o300 == 0o300)
    groups = os.getgrouplist(account.name, account.gid)
    if st.st_gid in groups:
        return bool(st.st_mode & 0o030 == 0o030)
    return bool(st.st_mode & 0o003 == 0o003)


def switch(account: Account) -> None:
    """Become the account for good (groups first, then the user)."""
    os.initgroups(account.name, account.gid)
    os.setgid(account.gid)
    os.setuid(account.uid)


def uid_of(user: Optional[str]) -> Optional[int]:
    """The uid of a user name, if there is such a user (a start checks)."""
    if user is None:
        return None
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None
