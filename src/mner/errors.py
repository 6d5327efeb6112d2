"""The one error type for problems the user can fix.

:class:`MNERError` (and its subclasses: bad data files, missing images, bad configs, unusable
checkpoints, misuse of the command line) says what was wrong, where (file:line, tweet id) and
what to do. The command line prints it as one line and exits with code 2. Any other exception
is a bug in mner and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["MNERError", "UsageError"]


class MNERError(Exception):
    """A problem the user can fix; the CLI prints it as one line (exit code 2)."""


class UsageError(MNERError):
    """A command used the wrong way (options that do not go together, a missing argument)."""
