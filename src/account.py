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

from options import SettingsError


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
    """Give each existing path (a directory and the files directly in it,
    or a file) to the account, so it can go on writing them."""
    for path in paths:
        targets = [path]
        if os.path.isdir(path):
            targets += [os.path.join(path, n) for n in os.listdir(path)]
        for target in targets:
            if os.path.lexists(target) and not os.path.islink(target):
                os.chown(target, account.uid, account.gid)


def switch(account: Account) -> None:
    """Become the account for good (groups first, then the user)."""
    os.initgroups(account.name, account.gid)
    os.setgid(account.gid)
    os.setuid(account.uid)
