"""The ``growlm`` command line: the parser, assembled from the command groups, and :func:`main`.

Each command group has its module (``models``, ``data``, ``train``, ``grow``, ``evaluate``,
``compose``, ``bench``, ``experiment``) with its subcommands' parsers and handlers. Handlers only
translate arguments into library calls; the work (and the formatting of its results) is in the
library, so that everything the CLI does can also be done from Python. Input problems raise
:class:`growlm.errors.GrowlmError` and become ``error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sys
from types import ModuleType
from typing import Any, NoReturn

from growlm.cli import bench, compose, data, evaluate, experiment, grow, models, train
from growlm.cli.models import preset_rows  # noqa: F401 -- kept importable from here
from growlm.errors import GrowlmError
from growlm.logs import show_messages

# Start-up: this module imports no torch, transformers or numpy, and neither does building the
# parser, so ``growlm --help`` answers at once; each handler imports what it needs
# (benchmarks/startup.py measures it, tests/cli/test_startup.py keeps it so).

DESCRIPTION = """\
Train transformer language models and grow them (width, depth, Nexus-Rank, parameter
tokens) without losing what they learned.

Start with 'growlm models' (the presets), 'growlm demo' (the whole story on a CPU) or
'growlm COMMAND --help'. Wherever a model is expected, a model or checkpoint folder, a run
folder (its newest good checkpoint) or a plan run folder (its last completed stage) will do."""


def _quiet_transformers(transformers: ModuleType) -> None:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _quiet_libraries() -> None:
    """Quiet transformers once a command imports it (importing it here would cost seconds)."""
    from wrapt import register_post_import_hook

    register_post_import_hook(_quiet_transformers, "transformers")


# -- parser ---------------------------------------------------------------------------------------
def version_text() -> str:
    """``growlm 0.1.0 (commit 70acb97, source 0123456789ab)``: see :mod:`growlm.provenance`."""
    from growlm.provenance import provenance

    return provenance().text()


class _VersionAction(argparse.Action):
    """``--version``, computed when asked (git is not run for every command)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        print(version_text())
        parser.exit()


class _DefaultsFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except where there is none to show (required
    options, None, on/off flags) or the help already says it in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.required or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or action.nargs == 0 or "default" in text.lower()):  # identity: 0 == False
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with errors that help: an unknown flag is reported by the subcommand it was given
    to (its usage, not the top level's) with the closest flag it has; a mistyped choice (a
    command name) gets the closest valid one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    # argparse's stubs type these as overloads generic in the namespace; growlm passes none of its own
    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        # subcommands parse first and their namespace is copied into the parent's: the innermost
        # parser that left arguments unparsed is the one to report them
        if extras and not hasattr(parsed, "_growlm_parser"):
            parsed._growlm_parser = self
        return parsed, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        owner = getattr(parsed, "_growlm_parser", self)
        if extras:
            owner.error(f"unrecognized arguments: {' '.join(extras)}{owner._suggestion(extras)}")
        if hasattr(parsed, "_growlm_parser"):
            del parsed._growlm_parser
        return parsed

    def _suggestion(self, extras: list[str]) -> str:
        flags = [f for a in self._actions for f in a.option_strings if f.startswith("--")]
        for arg in extras:
            if arg.startswith("-"):
                close = difflib.get_close_matches(arg.split("=", 1)[0], flags, n=1, cutoff=0.6)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""

    def error(self, message: str) -> NoReturn:
        bad = re.match(r"argument .*: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if bad:
            choices = [c.strip().strip("'") for c in bad.group(2).split(",")]
            close = difflib.get_close_matches(bad.group(1), choices, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="growlm", description=DESCRIPTION)
    parser.add_argument("--version", action=_VersionAction,
                        help="print growlm's version, its git commit when run from its own checkout, and a hash of "
                             "its source files, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models.add_parsers(sub)
    data.add_parsers(sub)
    train.add_parsers(sub)
    grow.add_parsers(sub)
    evaluate.add_parsers(sub)
    compose.add_parsers(sub)
    bench.add_parsers(sub)
    experiment.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None, configure: bool | None = None) -> int:
    """Run one ``growlm`` command. ``configure``: make the process-wide settings of a growlm program
    first (:func:`growlm.system.configure_process`); by default only when the command comes from
    this process's own command line (``argv`` None: the ``growlm`` program), not when a caller
    (a test, a script) passes ``argv`` and keeps its process as it is."""
    args = build_parser().parse_args(argv)
    if configure is None:
        configure = argv is None
    if configure:
        from growlm.system import configure_process

        configure_process()
    _quiet_libraries()
    # the library logs; the command line shows each message as a plain line (under torchrun, from
    # rank 0 only: the other ranks run the same work and would repeat it)
    show_messages(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.CRITICAL + 1)
    try:
        args.func(args)
    except GrowlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
