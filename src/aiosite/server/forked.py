"""Run a function in a forked child and return what it returned.

The master of ``aiosite serve`` checks the project before it starts any worker: it loads
the settings and builds the site once. Loading the settings imports the project's apps
(their packages, routes and models). Done in the master itself, those modules would be
inherited by every worker it forks, so a SIGHUP would start new workers with the old
code; done in a child that exits, the master stays free of the project's code and each
worker imports it afresh.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from typing import TypeVar

from aiosite.exceptions import AiositeError, CommandError

T = TypeVar("T")


def call_in_child(function: Callable[[], T]) -> T:
    """``function()``, run in a forked child; its result must pickle. An AiositeError it
    raises comes back as a CommandError with the same message; so does any other
    exception, as one line."""
    # Buffered output would be written twice, by the child and by this process.
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child leaves through os._exit: no coverage)
        os.close(read_end)
        _child(function, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise CommandError(
            f"checking the project failed: the checking process died "
            f"(status {os.waitstatus_to_exitcode(status)}); run `aiosite check` to see why"
        )
    # Our own child's bytes, through a pipe only the two processes hold.
    ok, value = pickle.loads(data)  # noqa: S301
    if ok:
        result: T = value
        return result
    raise CommandError(value)


def _child(function: Callable[[], T], write_end: int) -> None:  # pragma: no cover
    outcome: tuple[bool, object]
    try:
        outcome = (True, function())
    except AiositeError as exc:
        outcome = (False, str(exc))
    except BaseException as exc:
        outcome = (False, f"{type(exc).__name__}: {exc}")
    try:
        data = pickle.dumps(outcome)
    except Exception as exc:
        data = pickle.dumps((False, f"checking the project failed: {exc}"))
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(data)
    sys.stdout.flush()
    sys.stderr.flush()
    # No atexit handlers, no cleanup of what the parent owns (its files, its loggers).
    os._exit(0)
