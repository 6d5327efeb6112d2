"""Files the user names: inputs that must be regular files, outputs written without loss.

Inputs (:func:`require_regular_file`): a device, a FIFO or a socket named as an input file
(``--input /dev/zero``, ``mner tag /dev/zero``) is refused before anything is read: such a file
has no end to read to, or cannot be read twice (``mner tag`` reads a file once to plan it and
again to tag it). The data commands refuse such paths too (they want a file).

Outputs (:func:`write_output`), by what is at the target:

* nothing, or a regular file: the text is written to a temporary file in the same folder,
  flushed to disk and renamed into place, so that a kill or a full disk leaves the file that was
  there (or nothing) and never a partial one; the file keeps its permissions;
* a symbolic link: the same, at the file the link points to (the link stays a link);
* a character device or a FIFO (``/dev/null``, a named pipe), or any existing file under
  ``/dev`` or ``/proc`` (``/dev/stdout`` is a link to whatever standard output is): the text is
  streamed to it; nothing is created or renamed there;
* a folder, a socket: refused before writing.

A full disk (``ENOSPC``, ``EDQUOT``, ``EFBIG`` past a file-size limit) or a read-only file system
is an :class:`~mner.errors.MNERError` naming the file and saying that nothing was written there.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from mner.errors import MNERError

__all__ = ["FULL_DISK_ERRNOS", "describe_file_type", "require_regular_file", "write_output"]

#: errno values that mean "no room": a full disk, a quota, a file-size limit, a read-only disk.
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def describe_file_type(mode: int) -> str:
    """What a non-regular file is, in words (``st_mode`` of :func:`os.stat`)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def require_regular_file(path: str | Path, what: str = "input") -> Path:
    """``path`` when it is a regular file (or a link to one); otherwise an :class:`MNERError`
    saying what it is (a missing file is a :class:`FileNotFoundError`, a user error too)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if not stat.S_ISREG(mode):
        raise MNERError(f"{path}: {describe_file_type(mode)}, not a regular file; give the {what} as a regular "
                        "file (copy what should be read into one)")
    return path


def _full(path: Path, err: OSError, what: str, hint: str) -> MNERError:
    return MNERError(f"{path}: could not write{' ' + what if what else ''} ({os.strerror(err.errno)}); nothing "
                     f"was written there: {hint}")


def write_output(path: str | Path, text: str, *, what: str = "",
                 hint: str = "free some space or write elsewhere") -> Path:
    """Write ``text`` (UTF-8) to ``path`` as the module docstring says; returns the file written
    (the link's target for a symbolic link). ``what`` and ``hint`` word the full-disk error:
    ``"{path}: could not write {what} (No space left on device); nothing was written there: {hint}"``."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:  # a link loop, a folder on the way that is no folder
        raise MNERError(f"{path}: cannot be written ({os.strerror(err.errno)})") from None
    special = str(path.absolute()).startswith(("/dev/", "/proc/"))
    if mode is not None and (special or not stat.S_ISREG(mode)):
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or (special and stat.S_ISREG(mode)):
            return _stream(path, target, text, what, hint)
        raise MNERError(f"{path}: {describe_file_type(mode)}; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        # the permissions of the file replaced, or those a new file gets (umask)
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fd = -1
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        if fd != -1:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in FULL_DISK_ERRNOS:
            raise _full(path, err, what, hint) from None
        raise
    return target


def _stream(path: Path, target: Path, text: str, what: str, hint: str) -> Path:
    """Write ``text`` to a character device or a FIFO (no temporary file, no rename)."""
    try:
        with open(target, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
    except OSError as err:
        if err.errno in FULL_DISK_ERRNOS:
            raise MNERError(f"{path}: could not write{' ' + what if what else ''} to this device "
                            f"({os.strerror(err.errno)})") from None
        raise
    return target
