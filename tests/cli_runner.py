"""Running the ``aiosite`` CLI from tests: in-process, or as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiosite.cli import main

AIOSITE = Path(sys.executable).with_name("aiosite")
TIMEOUT = 60


@dataclass
class Result:
    code: int
    out: str
    err: str


def invoke(capsys: pytest.CaptureFixture[str], args: list[str]) -> Result:
    """``aiosite ARGS`` in this process: its exit code and what it printed."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    code = exit_info.value.code
    return Result(code if isinstance(code, int) else 1, captured.out, captured.err)


def one_line_error(result: Result, *fragments: str) -> str:
    """Assert the CLI failed with exit 2 and one ``error:`` line holding ``fragments``."""
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def aiosite_process(
    root: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``aiosite --project ROOT --env test ARGS`` in a fresh process (by default with this
    process's environment, and so the test database's variables)."""
    return subprocess.run(
        [str(AIOSITE), "--project", str(root), "--env", "test", *args],
        cwd=root,
        input=input,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
