"""Debian's nginx for tests: check a site file, or run one on a port of the test's own.

``make system-packages`` (which ``make test`` runs) installs nginx; ``AIOSITE_NGINX``
names another binary. Every nginx a test starts has its own prefix, main configuration,
pid file, logs and temporary directories under a directory of the test's, and listens
where the site file says: a system nginx (Debian's package starts one on port 80) is
never touched, and tests never use port 80.

Usage (the site file is typically ``aiosite deploy nginx`` output, rendered with
``AIOSITE_DEPLOY__LISTEN='["127.0.0.1:<port>"]'``)::

    binary = nginx_binary()                   # skips, or fails under AIOSITE_REQUIRE_SERVICES=1
    check_site(binary, site_file, tmp_path)   # `nginx -t`; AssertionError with its output
    port = free_port()
    with running_nginx(binary, site_file, tmp_path / "nginx", port) as nginx:
        urllib.request.urlopen(f"{nginx.url}/static/app.css")
        ...                                   # nginx.error_log(): its error log so far
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port

DEFAULT_BINARY = "/usr/sbin/nginx"
__all__ = [
    "RunningNginx",
    "check_site",
    "free_port",
    "nginx_binary",
    "running_nginx",
]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# Types the site files' static locations need when the binary has no mime.types beside it.
_FALLBACK_TYPES = """\
    types {
        text/html html;
        text/css css;
        text/plain txt;
        application/javascript js;
        application/json json;
        image/png png;
        image/svg+xml svg;
    }
"""


def nginx_binary() -> Path:
    """nginx's executable (``AIOSITE_NGINX``, else Debian's): the test is skipped when
    it is missing, or fails when ``AIOSITE_REQUIRE_SERVICES=1``."""
    binary = Path(os.environ.get("AIOSITE_NGINX") or DEFAULT_BINARY)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    message = f"nginx is not installed at {binary}: run `make system-packages` (as root)"
    if os.environ.get("AIOSITE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; AIOSITE_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


def main_config(site_file: Path, directory: Path) -> Path:
    """Write ``directory/nginx.conf``: a main configuration of the test's own that
    includes ``site_file`` in its ``http`` block, as Debian's /etc/nginx/nginx.conf
    includes sites-enabled/; pid, logs and temporary files all under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "temp" / temp).mkdir(parents=True, exist_ok=True)
    mime_types = Path("/etc/nginx/mime.types")
    types = f"    include {mime_types};\n" if mime_types.is_file() else _FALLBACK_TYPES
    # As root the workers would become "nobody", who cannot read a test's files.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = directory / "nginx.conf"
    config.write_text(
        f"{user}"
        "worker_processes 1;\n"
        f"pid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log info;\n"
        "events {\n    worker_connections 256;\n}\n"
        "http {\n"
        f"{types}"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        f"    access_log {directory}/access.log;\n"
        f"    client_body_temp_path {directory}/temp/body;\n"
        f"    proxy_temp_path {directory}/temp/proxy;\n"
        f"    fastcgi_temp_path {directory}/temp/fastcgi;\n"
        f"    uwsgi_temp_path {directory}/temp/uwsgi;\n"
        f"    scgi_temp_path {directory}/temp/scgi;\n"
        f"    include {site_file.resolve()};\n"
        "}\n"
    )
    return config


def _command(binary: Path, config: Path, *extra: str) -> list[str]:
    directory = config.parent
    # -e: the error log before the configuration is read (Debian's default is stderr).
    return [str(binary), "-p", str(directory), "-c", str(config), "-e", "stderr", *extra]


def check_site(binary: Path, site_file: Path, directory: Path) -> str:
    """``nginx -t`` on ``site_file`` (in a main configuration of its own under
    ``directory``); its output, or AssertionError with it when nginx refuses the file."""
    config = main_config(site_file, directory)
    result = subprocess.run(
        _command(binary, config, "-t", "-q"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"nginx -t refused {site_file}:\n{output}"
    return output


@dataclass(frozen=True)
class RunningNginx:
    """An nginx started by ``running_nginx``."""

    process: subprocess.Popen[bytes]
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.directory / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_nginx(
    binary: Path, site_file: Path, directory: Path, port: int, host: str = "127.0.0.1"
) -> Iterator[RunningNginx]:
    """Run nginx in the foreground (``daemon off; master_process on;``) with
    ``site_file``, which must listen on ``host:port`` (a ``free_port()``); yields once
    that port accepts connections, stops it gracefully (SIGQUIT, then SIGKILL) after.
    Everything nginx writes is under ``directory``."""
    check_site(binary, site_file, directory)
    config = directory / "nginx.conf"
    with (directory / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            _command(binary, config, "-g", "daemon off; master_process on;"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    running = RunningNginx(process, directory, port)
    try:
        _wait_for_port(running, host)
        yield running
    finally:
        _stop(process)


def _wait_for_port(running: RunningNginx, host: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if running.process.poll() is not None:
            stderr = (running.directory / "stderr.log").read_text(errors="replace")
            raise AssertionError(
                f"nginx exited ({running.process.returncode}):\n{stderr}{running.error_log()}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, running.port), 0.2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"nginx did not listen on {host}:{running.port} within {START_TIMEOUT} s:\n"
                f"{running.error_log()}"
            )
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGQUIT)  # graceful: workers finish their requests
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)
