"""Which errors the command line prints as one line (the user's to fix) and which keep their
traceback (bugs): :mod:`mner.errors`."""

from __future__ import annotations

import pytest

import mner.cli.score
from mner.cli import main
from mner.config import ConfigError
from mner.data.formats import DataFormatError
from mner.data.images import ImageError, MissingImagesError
from mner.errors import MNERError, UsageError, is_user_error
from mner.models import CheckpointError


def _command_raising(monkeypatch, err: BaseException) -> None:
    """Make ``mner score`` raise ``err`` as soon as it runs."""

    def cmd(args):
        raise err

    monkeypatch.setattr(mner.cli.score, "cmd_score", cmd)


def test_a_user_error_prints_one_line_and_exits_2(monkeypatch, capsys):
    _command_raising(monkeypatch, MNERError("data/train.txt:12: a tag 'B-' without a type (write B-PER)"))
    assert main(["score", "gold.txt"]) == 2
    err = capsys.readouterr().err
    assert err == "mner: error: data/train.txt:12: a tag 'B-' without a type (write B-PER)\n"


@pytest.mark.parametrize("bug", [ValueError("shapes (3, 4) and (5,) do not fit"), KeyError("tags"),
                                 TypeError("unsupported operand")])
def test_a_bug_keeps_its_traceback(monkeypatch, capsys, bug):
    """A plain ValueError/KeyError from mner's code is a bug, not bad input: it is raised on
    (Python prints its traceback), never turned into a one-line error."""
    _command_raising(monkeypatch, bug)
    with pytest.raises(type(bug)) as info:
        main(["score", "gold.txt"])
    assert info.value is bug
    assert "mner: error" not in capsys.readouterr().err


def test_debug_shows_the_traceback_of_a_user_error_too(monkeypatch):
    err = UsageError("give either --text or --input")
    _command_raising(monkeypatch, err)
    with pytest.raises(UsageError) as info:
        main(["--debug", "score", "gold.txt"])
    assert info.value is err


def test_a_missing_file_is_the_users_error(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err


@pytest.mark.parametrize("err,user", [
    (MNERError("x"), True), (UsageError("x"), True), (ConfigError("x"), True),
    (DataFormatError("f.txt", 3, "bad"), True), (ImageError("missing", "t1", None), True),
    (CheckpointError("x"), True), (FileNotFoundError("x"), True), (IsADirectoryError("x"), True),
    (FileExistsError("x"), True), (PermissionError("x"), True), (NotADirectoryError("x"), True),
    (ValueError("x"), False), (KeyError("x"), False), (RuntimeError("x"), False), (OSError("x"), False),
])
def test_is_user_error(err, user):
    assert is_user_error(err) is user
    assert issubclass(MissingImagesError, MNERError)


def test_config_and_format_errors_stay_value_errors():
    """Callers that caught ValueError for a bad config, file or checkpoint still do."""
    for cls in (ConfigError, DataFormatError, CheckpointError):
        assert issubclass(cls, MNERError) and issubclass(cls, ValueError)


def test_usage_error_is_importable_from_the_cli():
    from mner.cli.main import UsageError as FromMain

    assert FromMain is UsageError
