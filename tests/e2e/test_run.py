"""``aiosite run`` as a user runs it: a subprocess on a free port, fetched over HTTP."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
DEADLINE = 30.0  # generous: a loaded 2-core machine imports slowly


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSITE_")}
    env.update(extra)
    return env


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read().decode())
        finally:
            conn.close()

    def wait_ready(self) -> None:
        wait_for(lambda: self._answers(), f"server on port {self.port} to answer", self)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(
                f"aiosite run exited with {self.proc.returncode}:\n{self.stdout()}\n{self.stderr()}"
            )
        try:
            self.get("/hello.json")
        except OSError:
            return False
        return True

    def signal_group(self, sig: signal.Signals) -> int:
        """Send ``sig`` as a terminal's Ctrl-C does (to the whole process group)."""
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=15)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage  # case-insensitive
    text: str


def wait_for(check: Callable[[], bool], what: str, server: Server | None = None) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    logs = f"\n{server.stdout()}\n{server.stderr()}" if server else ""
    pytest.fail(f"timed out waiting for {what}{logs}")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def starter(
        project: Path,
        *args: str,
        command: tuple[str, ...] | None = None,
        env: dict[str, str] | None = None,
    ) -> Server:
        port = free_port()
        n = len(servers)
        out, err = tmp_path / f"out{n}.log", tmp_path / f"err{n}.log"
        cmd = [*(command or (str(BIN / "aiosite"),)), "run", "--port", str(port), *args]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                cmd,
                cwd=project,
                stdout=stdout,
                stderr=stderr,
                env=clean_env(AIOSITE_ENV="development", **(env or {})),
                start_new_session=True,
            )
        server = Server(proc, port, out, err)
        servers.append(server)
        return server

    yield starter
    for server in servers:  # always stop the children, also their reload workers
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=10)


def assert_no_traceback(server: Server) -> None:
    assert "Traceback" not in server.stderr() + server.stdout()


def access_line(server: Server, request_id: str, path: str) -> str:
    pattern = re.compile(rf"^.*\[{re.escape(request_id)}\].*\"GET {re.escape(path)}\".*$", re.M)
    wait_for(
        lambda: pattern.search(server.stderr()) is not None,
        f"the access log line of {path}",
        server,
    )
    match = pattern.search(server.stderr())
    assert match is not None
    return match.group(0)


def test_run_serves_pages_static_files_and_404(
    make_project: Callable[..., Path], start: Callable[..., Server]
) -> None:
    server = start(make_project(), "--no-reload")
    server.wait_ready()

    home = server.get("/", {"X-Request-ID": "e2e-home-1"})
    assert home.status == 200
    assert home.headers["Content-Type"].startswith("text/html")
    assert "<p>&lt;Hello&gt; from Test Site</p>" in home.text
    assert home.headers["X-Request-ID"] == "e2e-home-1"

    css = server.get("/static/home/site.css", {"X-Request-ID": "e2e-css-1"})
    assert css.status == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert css.headers["ETag"]
    assert css.text == "body { color: #123; }\n"
    assert css.headers["X-Request-ID"] == "e2e-css-1"

    missing = server.get("/no/such/page", {"Accept": "text/html"})
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("text/html")
    assert "404" in missing.text
    generated_id = missing.headers["X-Request-ID"]
    assert generated_id

    line = access_line(server, "e2e-css-1", "/static/home/site.css")
    assert re.search(r" 200 \d+ \d+(\.\d+)?ms", line), line
    line = access_line(server, generated_id, "/no/such/page")
    assert re.search(r" 404 \d+ \d+(\.\d+)?ms", line), line

    started = time.monotonic()
    assert server.signal_group(signal.SIGINT) == 0
    assert time.monotonic() - started < 10
    assert_no_traceback(server)
    assert server.stdout().count("aiosite: serving 'Test Site' (development)") == 1


def test_python_m_aiosite_run_stops_on_sigterm(
    make_project: Callable[..., Path], start: Callable[..., Server]
) -> None:
    server = start(make_project(), "--no-reload", command=(sys.executable, "-m", "aiosite"))
    server.wait_ready()
    assert server.get("/hello.json").text == '{"message":"Hello, World!"}'
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    assert_no_traceback(server)


def test_reload_restarts_on_code_and_template_changes(
    make_project: Callable[..., Path], start: Callable[..., Server]
) -> None:
    # A project inside a hidden directory (say ~/.local/src) is watched all the same.
    hidden = make_project()
    project = hidden.parent / ".projects" / hidden.name
    project.parent.mkdir()
    hidden.rename(project)
    app_dir = project / project.name / "home"
    # The reload worker must see the same environment as the command.
    server = start(project, "--reload", env={"AIOSITE_SITE__NAME": "Env Site"})
    server.wait_ready()
    assert "with autoreload" in server.stdout()
    assert "from Env Site" in server.get("/").text

    def serves(path: str, text: str) -> Callable[[], bool]:
        def check() -> bool:
            try:
                return text in server.get(path).text
            except OSError:  # restarting
                return False

        return check

    routes = app_dir / "routes.py"
    routes.write_text(routes.read_text().replace("Hello, World!", "Hello again, reloaded!"))
    wait_for(serves("/hello.json", "Hello again, reloaded!"), "the edited handler", server)

    template = app_dir / "templates" / "home" / "index.html"
    template.write_text("<h1>Edited {{ greeting }}</h1>")
    wait_for(serves("/", "<h1>Edited &lt;Hello&gt;</h1>"), "the edited template", server)

    # A broken edit: one clear error line, and the watcher waits for the fix.
    good = routes.read_text()
    routes.write_text(good + "\ndef broken(:\n")
    wait_for(lambda: "waiting for a change" in server.stderr(), "the error report", server)
    error_lines = [ln for ln in server.stderr().splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1
    assert "SyntaxError" in error_lines[0]
    assert f"{routes}:" in error_lines[0]
    assert server.proc.poll() is None
    routes.write_text(good.replace("reloaded!", "fixed!!"))
    wait_for(serves("/hello.json", "Hello again, fixed!!"), "the fixed handler", server)

    assert server.stdout().count("aiosite: serving 'Env Site'") == 1
    assert server.signal_group(signal.SIGINT) == 0
    assert_no_traceback(server)
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port), 1),
    ):
        pass  # the reload worker has gone too


PID_ROUTES = """
import asyncio
import os

from aiohttp import web

from aiosite import Routes

routes = Routes()


@routes.get("/hello.json", name="hello")
async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@routes.get("/pid", name="pid")
async def pid(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("sleep", "0")))
    return web.Response(text=str(os.getpid()))
"""


def test_reload_ignores_static_files_and_media_but_not_code_or_config(
    make_project: Callable[..., Path], start: Callable[..., Server]
) -> None:
    project = make_project(
        {"PKG/home/routes.py": PID_ROUTES, "PKG/static/site.css": "body { margin: 0; }\n"}
    )
    package = project / project.name
    new_files = {
        package / "static" / "about.html": "<p>about</p>",
        package / "static" / "robots.txt": "User-agent: *\n",
        package / "static" / "js" / "app.js": "console.log(1)\n",
        package / "static" / "templates" / "page.html": "<p>not a template</p>",
        package / "home" / "static" / "home" / "extra.css": "p { color: red; }\n",
        package / "home" / "static" / "home" / "helper.py": "# an asset, not code\n",
        project / "var" / "media" / "upload.html": "<p>uploaded</p>",
        project / "var" / "media" / "uploaded.py": "# an upload, not code of the site\n",
        project / "notes.txt": "a note beside the project\n",
        project / "config" / "notes.txt": "not a settings file\n",
    }
    # The folders exist before the watcher starts: one made at the same moment as its
    # files may be watched only after they were written.
    for path in new_files:
        path.parent.mkdir(parents=True, exist_ok=True)
    server = start(project, "--reload")
    server.wait_ready()
    first_pid = server.get("/pid").text

    # A request in flight while the files arrive is answered by the same process.
    in_flight: list[Response] = []
    slow = threading.Thread(target=lambda: in_flight.append(server.get("/pid?sleep=3")))
    slow.start()
    time.sleep(0.3)
    for path, text in new_files.items():
        path.write_text(text)
    slow.join(timeout=DEADLINE)
    assert [(r.status, r.text) for r in in_flight] == [(200, first_pid)]
    # watchfiles reports changes after about 1.6 s of quiet; give it twice that.
    time.sleep(4)
    assert server.get("/pid").text == first_pid
    assert "restarting" not in server.stderr()
    # New static files are served as they are on disk, without a restart.
    page = server.get("/static/about.html")
    assert (page.status, page.text) == (200, "<p>about</p>")
    assert server.get("/static/home/extra.css").text == "p { color: red; }\n"

    def restarted(after: str) -> Callable[[], bool]:
        def check() -> bool:
            try:
                return server.get("/pid").text != after
            except OSError:  # restarting
                return False

        return check

    (package / "home" / "views.py").write_text("VALUE = 1\n")
    wait_for(restarted(first_pid), "a restart after a .py change", server)
    assert "1 change(s) (views.py), restarting" in server.stderr()
    second_pid = server.get("/pid").text
    development = project / "config" / "development.yaml"
    development.write_text(development.read_text() + "site:\n  name: YAML Site\n")
    wait_for(restarted(second_pid), "a restart after a settings change", server)
    assert server.signal_group(signal.SIGINT) == 0
    assert_no_traceback(server)


@pytest.mark.parametrize("mode", ["--no-reload", "--reload"])
def test_taken_port_is_one_line_and_exit_2(make_project: Callable[..., Path], mode: str) -> None:
    project = make_project()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(BIN / "aiosite"), "run", "--port", str(port), mode],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(AIOSITE_ENV="development"),
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0]
    assert "already in use" in lines[0]
    assert "Traceback" not in result.stderr


def test_outside_a_project_is_one_line_and_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [str(BIN / "aiosite"), "run", "--port", str(free_port()), "--no-reload"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "not inside an aiosite project" in lines[0]
    assert result.stdout == ""


def run_expecting_one_error_line(project: Path, **env: str) -> list[str]:
    """Run `aiosite run --no-reload` in ``project``; it must exit 2 with one stderr line."""
    result = subprocess.run(
        [str(BIN / "aiosite"), "run", "--port", str(free_port()), "--no-reload"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(AIOSITE_ENV="development", **env),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines


def test_broken_app_without_reload_is_one_line_and_exit_2(
    make_project: Callable[..., Path],
) -> None:
    project = make_project({"PKG/home/views.py": "x = 1\n"})
    routes = project / project.name / "home" / "routes.py"
    routes.write_text(routes.read_text() + "\nraise RuntimeError('boom at import')\n")
    lines = run_expecting_one_error_line(project)
    assert "boom at import" in lines[0]
    assert f"{routes}:" in lines[0]


def test_failing_startup_hook_is_one_line_and_exit_2(make_project: Callable[..., Path]) -> None:
    project = make_project(
        {
            "PKG/site.py": """\
            async def connect(app):
                raise ConnectionError("database is down")


            def setup(app, settings, registry):
                app.on_startup.append(connect)
            """,
        }
    )
    lines = run_expecting_one_error_line(project)
    assert "starting the site failed: ConnectionError: database is down" in lines[0]
    assert f"{project / project.name / 'site.py'}:2" in lines[0]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://root:pw@127.0.0.1:1/test",
            "error: starting the site failed: database.url: cannot connect to "
            "postgresql+asyncpg://root:***@127.0.0.1:1/test: ConnectionRefusedError",
        ),
        (
            "nosuch+driver://x/y",
            "error: environment variable AIOSITE_DATABASE__URL: database.url: "
            "unknown database driver 'nosuch+driver'",
        ),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_naming_the_setting(
    make_project: Callable[..., Path], url: str, expected: str
) -> None:
    lines = run_expecting_one_error_line(make_project(), AIOSITE_DATABASE__URL=url)
    assert lines[0].startswith(expected)
    assert ":pw@" not in lines[0]


def test_json_logs_carry_request_id_status_and_duration(
    make_project: Callable[..., Path], start: Callable[..., Server]
) -> None:
    import json

    env = {"AIOSITE_LOGGING__FORMAT": "json", "AIOSITE_SERVER__ACCESS_LOG": "true"}
    server = start(make_project(), "--no-reload", env=env)
    server.wait_ready()
    assert server.get("/?token=s3cret", {"X-Request-ID": "json-log-1"}).status == 200

    def access_record() -> dict[str, object] | None:
        for line in server.stderr().splitlines():
            if line.startswith("{") and '"json-log-1"' in line:
                record: dict[str, object] = json.loads(line)
                return record
        return None

    wait_for(lambda: access_record() is not None, "the JSON access line", server)
    record = access_record()
    assert record is not None
    assert record["logger"] == "aiosite.access"
    assert record["request_id"] == "json-log-1"
    assert record["status"] == 200
    assert isinstance(record["duration_ms"], float | int)
    assert '"GET /?token=********" 200' in str(record["message"])
    assert "s3cret" not in server.stderr()
    assert server.signal_group(signal.SIGINT) == 0


def test_run_cuts_off_slow_clients_and_shows_no_version(
    make_project: Callable[..., Path], start: Callable[..., Server]
) -> None:
    """``aiosite run`` serves with the connection limits of the settings."""
    server = start(make_project(), "--no-reload", env={"AIOSITE_SERVER__HEAD_TIMEOUT": "1"})
    server.wait_ready()
    assert server.get("/hello.json").headers["Server"] == "aiosite"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()
        slow.sendall(b"Host: localhost\r\n")
        answer = b""
        while chunk := slow.recv(4096):
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert elapsed < 5
    assert_no_traceback(server)
