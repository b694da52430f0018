"""Messages: the library logs, entry points decide where the lines go.

Every module that has something to tell (progress, notes, warnings) logs it through its own
``logging.getLogger(__name__)``; no library function prints a message or takes a callback to say
one. A library user sees them once they configure logging (``logging.basicConfig(level="INFO")``,
or :func:`show_messages` for growlm's plain lines). The command line calls :func:`show_messages`:
each message becomes the plain line the commands have always shown, on stderr beside the progress
bars (written through tqdm so a bar is not torn), except the lines of the modules whose messages
*are* their command's output (``growlm bench``'s measurements, ``growlm convert``'s and
``growlm demo``'s steps), which go to stdout.

Progress bars are not messages: they stay tqdm bars.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = "growlm"
# loggers whose lines are their command's results (stdout), not commentary on the work (stderr)
STDOUT_LOGGERS = frozenset({"growlm.bench", "growlm.convert", "growlm.demo"})


class LineHandler(logging.Handler):
    """A record's message as one plain line, on stdout or stderr as :data:`STDOUT_LOGGERS` says.

    The stream is looked up when a line is written, not when the handler is made, so a
    redirected ``sys.stdout``/``sys.stderr`` (pytest's capsys, ``contextlib.redirect_stdout``)
    gets the lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            stream = sys.stdout if record.name in STDOUT_LOGGERS else sys.stderr
            tqdm.write(self.format(record), file=stream)
        except Exception:
            self.handleError(record)


def show_messages(level: int = logging.INFO) -> None:
    """Show growlm's messages at ``level`` and above as plain lines (entry points call this once;
    calling it again replaces the handler, so lines are never doubled)."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, LineHandler)]:
        logger.removeHandler(handler)
    handler = LineHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


@contextmanager
def quiet(name: str = ROOT) -> Iterator[None]:
    """No messages from ``name`` (and the loggers below it) inside the block: for a step whose
    chatter would bury the caller's own lines (an experiment running many small analyses)."""
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(saved)


def shown_level() -> int | None:
    """The level :func:`show_messages` set, or None where it was not called: what a worker process
    passes to its own :func:`show_messages` to show messages as its parent does."""
    logger = logging.getLogger(ROOT)
    return logger.level if any(isinstance(h, LineHandler) for h in logger.handlers) else None
