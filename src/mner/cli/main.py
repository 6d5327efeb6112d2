"""Entry point: ``mner <command> ...``. Errors a user can fix exit with code 2 and one
clear line (no traceback); ``--debug`` (or ``MNER_DEBUG=1``) shows the traceback."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from mner import __version__
from mner.errors import UsageError, is_user_error

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from mner.cli import data as data_cmd
    from mner.cli import explain as explain_cmd
    from mner.cli import export as export_cmd
    from mner.cli import fewshot as fewshot_cmd
    from mner.cli import score as score_cmd
    from mner.cli import infer as infer_cmd
    from mner.cli import quickstart as quickstart_cmd
    from mner.cli import serve as serve_cmd
    from mner.cli import tag as tag_cmd
    from mner.cli import train as train_cmd

    parser = argparse.ArgumentParser(
        prog="mner",
        description="Multimodal named entity recognition: data tools, scoring, training and inference.",
    )
    parser.add_argument("--version", action="version", version=f"mner {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_cmd.register(sub)
    score_cmd.register(sub)
    train_cmd.register(sub)
    infer_cmd.register(sub)
    export_cmd.register(sub)
    tag_cmd.register(sub)
    quickstart_cmd.register(sub)
    fewshot_cmd.register(sub)
    serve_cmd.register(sub)
    explain_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        from mner.cli.launch import relaunch_if_needed

        code = relaunch_if_needed(list(sys.argv[1:] if argv is None else argv))
        if code is not None:
            return code
    if os.environ.get("MNER_VERBOSE") != "1":
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    debug = args.debug or os.environ.get("MNER_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # noqa: BLE001 - a user's error becomes one readable line
        if debug or not is_user_error(err):
            raise
        print(f"mner: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
