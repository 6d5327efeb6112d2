"""The one error type for problems the user can fix.

:class:`MNERError` (and its subclasses: bad data files, missing images, bad configs, unusable
checkpoints, misuse of the command line) says what was wrong, where (file:line, tweet id) and
what to do. The command line prints it as one line and exits with code 2. Any other exception
is a bug in mner and keeps its traceback: a plain ``ValueError`` or ``KeyError`` raised by
mner's code is never mistaken for bad input.

The subclasses live next to the code that raises them:
:class:`~mner.config.ConfigError`, :class:`~mner.data.formats.DataFormatError`,
:class:`~mner.data.images.ImageError`, :class:`~mner.data.images.MissingImagesError`,
:class:`~mner.models.checkpoint.CheckpointError`, and :class:`UsageError` here.
"""

from __future__ import annotations

__all__ = ["MNERError", "UsageError", "USER_OS_ERRORS", "is_user_error"]


class MNERError(Exception):
    """A problem the user can fix; the CLI prints it as one line (exit code 2)."""


class UsageError(MNERError):
    """A command used the wrong way (options that do not go together, a missing argument)."""


#: Operating-system errors a user causes (a wrong path, a folder that exists, no permission).
USER_OS_ERRORS: tuple[type[OSError], ...] = (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                               FileExistsError, PermissionError)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's to fix (printed as one line) rather than a bug (traceback)."""
    return isinstance(err, (MNERError,) + USER_OS_ERRORS)
