"""``aiosite deploy nginx|systemd|supervisor``: the files are valid for their programs,
say what the settings say, and nginx with the site file really proxies and serves.

nginx is Debian's (``make system-packages``; skipped without it, failed under
AIOSITE_REQUIRE_SERVICES=1); ``systemd-analyze verify`` runs where it is installed.
"""

from __future__ import annotations

import configparser
import datetime
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cli_runner import invoke, one_line_error
from tests.conftest import ProjectFactory
from tests.support.nginx import check_site, free_port, nginx_binary, running_nginx

PRODUCTION = """\
security:
  allowed_hosts: [example.com, .example.org, localhost, 127.0.0.1]
server:
  bind: ["127.0.0.1:8001", "unix:var/run/site.sock", "0.0.0.0:8002"]
  client_max_size: 1048576
  graceful_timeout: 25
uploads:
  max_size: 5242880
"""


def deploy(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    """``aiosite --project ROOT deploy ARGS`` (production settings): what it printed."""
    result = invoke(capsys, ["--project", str(root), "deploy", *args])
    assert result.code == 0, result
    return result.out


@pytest.fixture
def short_project(make_project: ProjectFactory) -> Iterator[Callable[[str], Path]]:
    """``short_project(production_yaml)``: a project in a short directory (a unix
    socket's path must fit in 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="aiosite-") as short:

        def make(production: str) -> Path:
            made = make_project(env_yaml={"production": production})
            return Path(shutil.copytree(made, Path(short) / made.name))

        yield make


@pytest.fixture
def project(short_project: Callable[[str], Path]) -> Path:
    return short_project(PRODUCTION)


def test_nginx_site_passes_nginx_t_and_follows_the_settings(
    project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = deploy(capsys, project, "nginx")
    site = tmp_path / "site.conf"
    site.write_text(text)
    check_site(nginx_binary(), site, tmp_path / "nginx")
    # Every bind is an upstream server; wildcards are reached on loopback, relative
    # unix sockets are the project's.
    assert "    server 127.0.0.1:8001;\n" in text
    assert f"    server unix:{project.resolve()}/var/run/site.sock;\n" in text
    assert "    server 127.0.0.1:8002;\n" in text
    assert "    keepalive 32;\n" in text
    # Below server.drain_timeout (5 s): nginx closes its idle connections to a stopping
    # site before the site does.
    assert "    keepalive_timeout 4s;\n" in text
    # The allowed hosts without the local names.
    assert "    server_name example.com .example.org;\n" in text
    # server.client_max_size + uploads.max_size.
    assert "    client_max_body_size 6m;\n" in text
    assert f"        alias {project.resolve()}/static_root/;\n" in text
    assert "        proxy_set_header Upgrade $http_upgrade;\n" in text
    assert "listen 80;" in text
    # No uploads location unless deploy.media_url asks for one.
    assert "media" not in text


def test_nginx_site_limits_the_metrics_to_metrics_allow(
    short_project: Callable[[str], Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = short_project(
        f"{PRODUCTION}metrics:\n  path: /internal/metrics\n  allow: [10.1.0.0/16, 'fd00::/8']\n"
    )
    text = deploy(capsys, root, "nginx")
    site = tmp_path / "site.conf"
    site.write_text(text)
    check_site(nginx_binary(), site, tmp_path / "nginx")
    location = text[text.index("    location = /internal/metrics {\n") :]
    assert location.startswith(
        "    location = /internal/metrics {\n"
        "        allow 10.1.0.0/16;\n"
        "        allow fd00::/8;\n"
        "        deny all;\n"
        f"        proxy_pass http://{root.name};\n"
    )
    assert "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n" in location

    disabled = short_project(f"{PRODUCTION}metrics:\n  enabled: false\n")
    assert "metrics" not in deploy(capsys, disabled, "nginx").replace("metrics.allow", "")


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("allow", "reaches_site"), [("[10.0.0.0/8]", False), ("[127.0.0.1/32]", True)]
)
async def test_metrics_through_nginx_only_for_metrics_allow(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    allow: str,
    reaches_site: bool,
) -> None:
    binary = nginx_binary()
    nginx_port, site_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="aiosite-") as sockets:
        settings = f"""\
security:
  allowed_hosts: [example.com]
metrics:
  allow: {allow}
deploy:
  listen: ["127.0.0.1:{nginx_port}"]
  upstreams: ["127.0.0.1:{site_port}"]
"""
        root = make_project(env_yaml={"production": settings})
        site = tmp_path / "site.conf"
        site.write_text(deploy(capsys, root, "nginx"))
        async with echo_site(site_port, f"{sockets}/site.sock"):
            with running_nginx(binary, site, tmp_path / "nginx", nginx_port) as nginx:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"{nginx.url}/metrics", headers={"Host": "example.com"}) as resp,
                ):
                    body = await resp.text()
    if reaches_site:
        assert resp.status == 200, body
        assert resp.headers["X-Site"] == "1"
    else:
        # nginx's own refusal: the request never reached the site.
        assert resp.status == 403, body
        assert "X-Site" not in resp.headers
        assert "nginx" in body


def test_nginx_site_with_tls_and_public_uploads(
    short_project: Callable[[str], Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    certificate, key = self_signed(tmp_path, "example.com")
    settings = (
        f"{PRODUCTION}deploy:\n  media_url: /media\n"
        f"  tls: {{certificate: {certificate}, key: {key}}}\n"
    )
    root = short_project(settings)
    text = deploy(capsys, root, "nginx")
    site = tmp_path / "site.conf"
    site.write_text(text)
    check_site(nginx_binary(), site, tmp_path / "nginx")
    assert "    listen 443 ssl http2;\n" in text
    assert f"    ssl_certificate {certificate};\n" in text
    # Plain HTTP only redirects.
    assert "    listen 80;\n        " not in text
    assert "        return 301 https://$host$request_uri;\n" in text
    assert "    location ^~ /media/ {\n" in text
    assert f"        alias {root.resolve()}/var/media/;\n" in text


@pytest.mark.e2e
async def test_requests_through_nginx_reach_the_site_and_static_files_come_from_disk(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = nginx_binary()
    nginx_port, site_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="aiosite-") as sockets:
        # A unix socket's path must stay short (108 bytes): not under tmp_path.
        socket_path = f"{sockets}/site.sock"
        settings = f"""\
security:
  allowed_hosts: [example.com]
server:
  client_max_size: 1024
uploads:
  max_size: 1024
static:
  max_age: 600
deploy:
  listen: ["127.0.0.1:{nginx_port}"]
  upstreams: ["127.0.0.1:{site_port}", "unix:{socket_path}"]
"""
        root = make_project(env_yaml={"production": settings})
        hashed = root / "static_root" / "home" / "site.0123456789ab.css"
        hashed.parent.mkdir(parents=True)
        hashed.write_text("body { color: #123; }\n")
        (root / "static_root" / "home" / "site.css").write_text("body { color: #456; }\n")
        # collectstatic's temporary file while it runs, and a hashed name without extension.
        (root / "static_root" / "home" / ".site.css.x1y2.tmp").write_text("half-written")
        (root / "static_root" / "home" / "LICENSE.0123456789ab").write_text("MIT\n")
        site = tmp_path / "site.conf"
        site.write_text(deploy(capsys, root, "nginx"))
        async with echo_site(site_port, socket_path):
            with running_nginx(binary, site, tmp_path / "nginx", nginx_port) as nginx:
                await _check_through(nginx.url)


async def _check_through(url: str) -> None:
    headers = {"Host": "example.com", "X-Forwarded-For": "6.6.6.6"}
    async with aiohttp.ClientSession() as session:
        # Both upstream servers (TCP and the unix socket) take turns.
        peers = set()
        for _ in range(4):
            async with session.get(f"{url}/headers", headers=headers) as resp:
                assert resp.status == 200
                seen = await resp.json()
                peers.add(seen["peer"])
        assert peers == {"127.0.0.1", ""}, peers
        assert seen["Host"] == "example.com"
        # The client's claim first, the address nginx saw last (what the site trusts).
        assert seen["X-Forwarded-For"] == "6.6.6.6, 127.0.0.1"
        assert seen["X-Forwarded-Proto"] == "http"
        assert len(seen["X-Request-ID"]) == 32  # nginx's $request_id
        assert seen["version"] == "1.1"
        assert seen["Connection"] is None  # kept alive
        mine = {**headers, "X-Request-ID": "lb-42"}
        async with session.get(f"{url}/headers", headers=mine) as resp:
            assert (await resp.json())["X-Request-ID"] == "lb-42"

        async with session.ws_connect(f"{url}/ws", headers={"Host": "example.com"}) as ws:
            await ws.send_str("ping")
            assert await ws.receive_str() == "echo ping"

        async with session.get(f"{url}/static/home/site.0123456789ab.css") as resp:
            assert resp.status == 200
            assert await resp.text() == "body { color: #123; }\n"
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert resp.headers["Content-Type"] == "text/css"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert "X-Site" not in resp.headers  # nginx's, not the site's
        async with session.get(f"{url}/static/home/site.css") as resp:
            assert await resp.text() == "body { color: #456; }\n"
            assert resp.headers["Cache-Control"] == "public, max-age=600"
        async with session.get(f"{url}/static/home/LICENSE.0123456789ab") as resp:
            assert await resp.text() == "MIT\n"
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        async with session.get(f"{url}/static/home/.site.css.x1y2.tmp") as resp:
            assert resp.status == 403
            assert "half-written" not in await resp.text()
        async with session.get(f"{url}/static/home/missing.css") as resp:
            assert resp.status == 404
            assert "X-Site" not in resp.headers

        # 1 KiB + 1 KiB: a larger body never reaches the site.
        async with session.post(f"{url}/headers", data=b"x" * 4096, headers=headers) as resp:
            assert resp.status == 413
            assert "X-Site" not in resp.headers


async def _headers(request: web.Request) -> web.Response:
    names = ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-ID", "Connection")
    seen: dict[str, str | None] = {name: request.headers.get(name) for name in names}
    seen["peer"] = request.remote
    seen["version"] = f"{request.version.major}.{request.version.minor}"
    return web.json_response(seen, headers={"X-Site": "1"})


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(f"echo {message.data}")
    return ws


class echo_site:  # a context manager, named like one made by a function
    """A tiny aiohttp site on 127.0.0.1:port and a unix socket, answering /headers with
    what it received and echoing /ws."""

    def __init__(self, port: int, socket_path: str) -> None:
        app = web.Application()
        app.router.add_route("*", "/headers", _headers)
        app.router.add_get("/metrics", _headers)
        app.router.add_get("/ws", _echo)
        self.runner = web.AppRunner(app)
        self.port = port
        self.socket_path = socket_path

    async def __aenter__(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await web.UnixSite(self.runner, self.socket_path).start()

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def test_systemd_unit(project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(
        settings.read_text().replace("unix:var/run/site.sock", f"unix:/run/{project.name}/s.sock")
        + "deploy:\n  environment: {TZ: Europe/Paris, GREETING: 100% ok}\n"
    )
    unit = tmp_path / f"{project.name}.service"
    deploy(capsys, project, "systemd", "--output", str(unit))
    text = unit.read_text()
    lines = text.splitlines()
    name = project.name
    assert any(line.startswith("ExecStart=") and line.endswith("/aiosite serve") for line in lines)
    for expected in (
        "Type=exec",
        "User=www-data",
        f"WorkingDirectory={project.resolve()}",
        "Environment=AIOSITE_ENV=production",
        "Environment=TZ=Europe/Paris",
        'Environment="GREETING=100%% ok"',
        f"EnvironmentFile=-/etc/{name}/env",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=35",  # server.graceful_timeout + 10
        "Restart=on-failure",
        f"RuntimeDirectory={name}",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert expected in lines, expected
    assert f"ReadWritePaths=-{project.resolve()}/var" in lines
    assert "MemoryDenyWriteExecute" not in text
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not verified")
    result = subprocess.run(
        [verify, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # Lines about the unit itself (not about the machine's other units, or a missing bus).
    about_unit = [line for line in result.stderr.splitlines() if unit.name in line]
    assert about_unit == [], result.stderr


def test_supervisor_program(
    project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(
        settings.read_text() + 'deploy:\n  environment: {GREETING: "say \\"hi\\""}\n'
    )
    parser = configparser.RawConfigParser()
    parser.read_string(deploy(capsys, project, "supervisor"))
    program = parser[f"program:{project.name}"]
    words = shlex.split(program["command"])
    assert words[:2] == ["/bin/sh", "-c"]
    assert f". /etc/{project.name}/env" in words[2]
    assert words[-1] == "serve"
    assert Path(words[-2]).name == "aiosite"
    assert program["directory"] == str(project.resolve())
    assert program["user"] == "www-data"
    assert program["environment"] == 'AIOSITE_ENV="production",GREETING="say \\"hi\\""'
    assert program["stopsignal"] == "TERM"
    assert program["stopwaitsecs"] == "35"
    for flag in ("autostart", "autorestart", "stopasgroup", "killasgroup"):
        assert program[flag] == "true", flag
    assert program["stdout_logfile"] == f"/var/log/supervisor/{project.name}.log"
    # The shell reads the environment file, then becomes the server (its signals go there).
    env_file = tmp_path / "env"
    env_file.write_text("AIOSITE_SECURITY__SECRET_KEY=from-the-file\n")
    script = words[2].replace(f"/etc/{project.name}/env", str(env_file))
    shown = subprocess.run(
        ["/bin/sh", "-c", script, "/bin/sh", "-c", "echo $AIOSITE_SECURITY__SECRET_KEY"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert shown.stdout == "from-the-file\n"


def test_secrets_are_refused_in_the_generated_files(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(
        settings.read_text() + "deploy:\n  environment: {AIOSITE_SECURITY__SECRET_KEY: x}\n"
    )
    result = invoke(capsys, ["--project", str(project), "deploy", "systemd"])
    one_line_error(result, "deploy.environment: AIOSITE_SECURITY__SECRET_KEY looks like a secret")


def test_only_nginx_needs_public_host_names(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project()  # allowed_hosts: localhost only
    result = invoke(capsys, ["--project", str(root), "deploy", "nginx"])
    one_line_error(
        result,
        "deploy.server_names: none",
        "deploy.server_names or security.allowed_hosts of config/production.yaml",
    )
    # Neither the unit nor the program names a host.
    assert "ExecStart=" in deploy(capsys, root, "systemd")
    assert f"[program:{root.name}]" in deploy(capsys, root, "supervisor")


@pytest.mark.parametrize(
    ("environment", "key"),
    [
        ("{REDIS: 'redis://:hunter2@10.0.0.20:6379/0'}", "REDIS holds a URL with a password"),
        ("{CACHE_URL: 'postgresql://u:pw@db/x'}", "CACHE_URL holds a URL with a password"),
        ("{SENTRY_DSN: 'https://abc@sentry.io/1'}", "SENTRY_DSN looks like a secret"),
        ("{STRIPE_API_KEY: sk_live}", "STRIPE_API_KEY looks like a secret"),
        ("{AWS_CREDENTIALS: x}", "AWS_CREDENTIALS looks like a secret"),
        ("{DB_PASSWD: x}", "DB_PASSWD looks like a secret"),
    ],
)
def test_credentials_are_refused_in_the_generated_files(
    project: Path, capsys: pytest.CaptureFixture[str], environment: str, key: str
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(settings.read_text() + f"deploy:\n  environment: {environment}\n")
    for kind in ("systemd", "supervisor"):
        result = invoke(capsys, ["--project", str(project), "deploy", kind])
        line = one_line_error(
            result, f"deploy.environment: {key}", f"EnvironmentFile /etc/{project.name}/env"
        )
        assert "hunter2" not in line


def test_harmless_variables_and_urls_without_password_are_kept(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(
        settings.read_text()
        + "deploy:\n  environment: {KEYBOARD: us, REDIS: 'redis://10.0.0.20:6379/0'}\n"
    )
    assert "Environment=REDIS=redis://10.0.0.20:6379/0\n" in deploy(capsys, project, "systemd")


def test_a_newline_in_an_environment_value_cannot_add_a_supervisor_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(
        settings.read_text() + 'deploy:\n  environment: {GREETING: "hi\\nuser=root"}\n'
    )
    for kind in ("supervisor", "systemd", "nginx"):
        result = invoke(capsys, ["--project", str(project), "deploy", kind])
        one_line_error(result, "deploy.environment.GREETING: holds a newline")


def test_a_newline_in_the_user_cannot_add_a_systemd_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(
        settings.read_text() + 'deploy:\n  user: "www-data\\nExecStartPre=/bin/sh -c id"\n'
    )
    result = invoke(capsys, ["--project", str(project), "deploy", "systemd"])
    one_line_error(result, "deploy.user: an account name")


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("deploy:\n  group: Root", "deploy.group: an account name"),
        ("deploy:\n  user: " + "u" * 33, "deploy.user: an account name"),
        ("deploy:\n  environment: {BAD-NAME: x}", "deploy.environment.BAD-NAME.[key]"),
        ('deploy:\n  environment: {TZ: "a\\rb"}', "deploy.environment.TZ: holds a newline"),
        ('site:\n  name: "Blog\\nuser root;"', "site.name: holds a newline"),
    ],
)
def test_values_that_could_change_a_line_are_refused(
    project: Path, capsys: pytest.CaptureFixture[str], setting: str, error: str
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(settings.read_text() + setting + "\n")
    result = invoke(capsys, ["--project", str(project), "deploy", "nginx"])
    one_line_error(result, error)


def test_accounts_with_posix_names_are_kept(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = project / "config" / "production.yaml"
    settings.write_text(settings.read_text() + "deploy:\n  user: _blog-site1$\n  group: web\n")
    lines = deploy(capsys, project, "systemd").splitlines()
    assert "User=_blog-site1$" in lines
    assert "Group=web" in lines


def test_a_unix_socket_path_too_long_is_refused(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    long_socket = "/run/" + "s" * 120 + ".sock"
    settings = f'{PRODUCTION}deploy:\n  upstreams: ["unix:{long_socket}"]\n'
    root = make_project(env_yaml={"production": settings})
    result = invoke(capsys, ["--project", str(root), "deploy", "nginx"])
    one_line_error(result, f"the unix socket {long_socket} has a path of 130 bytes")


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` and its key, as PEM files (nginx -t loads them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
