"""Which exceptions are the user's to fix (printed as one line) rather than bugs.

The rule lives in :mod:`mner.errors` (:class:`~mner.errors.MNERError` and the OS errors a user
causes); this module only re-exports it for the command line.
"""

from __future__ import annotations

from mner.errors import USER_OS_ERRORS, MNERError, UsageError, is_user_error

__all__ = ["MNERError", "USER_OS_ERRORS", "UsageError", "is_user_error"]
