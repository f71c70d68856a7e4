"""The running master of ``aiosite serve``, found through its pid file, and SIGHUP to it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from aiosite.exceptions import CommandError


def master_pid(pid_file: Path) -> int:
    """The pid in ``pid_file``, of a process that exists; CommandError otherwise."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        raise CommandError(
            f"no pid file at {pid_file}: is the server running? (it writes the file "
            "named by server.pid_file or --pid)"
        ) from None
    except OSError as exc:
        raise CommandError(f"cannot read the pid file {pid_file}: {exc.strerror}") from None
    if not text.isdigit() or int(text) <= 1:
        raise CommandError(f"the pid file {pid_file} holds no process id ({text[:20]!r})")
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CommandError(
            f"no process {pid} (from {pid_file}): the server is not running; "
            "remove the stale pid file"
        ) from None
    except PermissionError:
        raise CommandError(
            f"process {pid} (from {pid_file}) belongs to another user; "
            "run this as the server's user"
        ) from None
    return pid


def reload_workers(pid_file: Path) -> int:
    """Send SIGHUP to the master whose pid ``pid_file`` holds; return its pid."""
    pid = master_pid(pid_file)
    os.kill(pid, signal.SIGHUP)
    return pid
