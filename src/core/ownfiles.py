"""Opening the daemon's own files without being led elsewhere.

power often runs as root, and writes in directories others may write to
(a DATA_DIR handed to the wrong user, /tmp in a test). A symbolic link put
where power's CSV, lock or mark goes would make it truncate, append to or
overwrite whatever the link names: /etc/shadow, another user's file. So a
file of power's is opened through a link only when the link is power's own
(its owner is the user power runs as, or root) and so is what it names;
otherwise the open is refused with OwnFileError, which says why.
"""

from __future__ import annotations

import os
import stat


class OwnFileError(OSError):
    """A file of power's is a link to somewhere that is not power's."""


def check(path: str) -> None:
    """Raise OwnFileError if `path` is a symbolic link power must not
    follow; a plain file or no file at all passes."""
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(link.st_mode):
        return
    me = os.geteuid()
    try:
        target = os.stat(path)
    except FileNotFoundError:
        target = None  # a dangling link: following it would create its target
    if link.st_uid not in (me, 0) or target is None or target.st_uid != me:
        whose = (
            "nothing (it dangles)"
            if target is None
            else f"a file of uid {target.st_uid}"
        )
        raise OwnFileError(
            f"{path} is a symbolic link (to {os.readlink(path)}, {whose}) that is "
            f"not power's own (power runs as uid {me}); remove the link and let "
            "power make the file, or link only to a file of the user power "
            "runs as"
        )


def open_own(path: str, flags: int, mode: int = 0o644) -> int:
    """os.open for a file of power's: a link is followed only when check()
    allows it (and what was opened is checked again, should the link have
    changed in between); returns the descriptor."""
    check(path)
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        is_link = False
    fd = os.open(path, flags | (0 if is_link else os.O_NOFOLLOW), mode)
    if is_link and os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise OwnFileError(f"{path} changed while it was opened; try again")
    return fd
