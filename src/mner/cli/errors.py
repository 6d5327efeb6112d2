"""Which exceptions are the user's to fix (printed as one line) rather than bugs."""

from __future__ import annotations


def is_user_error(err: BaseException) -> bool:
    from mner.cli.main import UsageError
    from mner.data.formats import DataFormatError
    from mner.data.images import ImageError, MissingImagesError

    return isinstance(
        err,
        (UsageError, DataFormatError, ImageError, MissingImagesError, FileNotFoundError,
         NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError, ValueError, KeyError),
    )
