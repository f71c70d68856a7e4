"""Helpers for tests that run servers in subprocesses: a free port, and waiting for a
condition with the server's output in the failure."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

# Generous: a loaded 2-core machine imports and boots workers slowly.
DEADLINE = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], bool],
    what: str,
    logs: Callable[[], str] = str,
    *,
    deadline: float = DEADLINE,
    interval: float = 0.05,
) -> None:
    """Call ``check`` until it is true; fail the test naming ``what``, with ``logs()``
    (a server's output), when ``deadline`` seconds pass first."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if check():
            return
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}\n{logs()}")
