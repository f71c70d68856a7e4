"""What the deployment files say, worked out from a site's settings (no I/O).

Every file ``aiosite deploy`` writes is rendered from one ``DeployValues``, so that nginx,
systemd and supervisor agree on the paths, the addresses and the timeouts.
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiosite.exceptions import ImproperlyConfigured
from aiosite.metrics.config import MetricsSettings
from aiosite.server import production
from aiosite.settings import DeploySettings, Settings
from aiosite.uploads.config import UploadSettings, media_root
from aiosite.web.static import StaticSettings

# Names that reach only this machine: nginx is there for the others.
_LOCAL_HOSTS = frozenset({"localhost", ".localhost", "127.0.0.1", "[::1]", "::1", "*"})
# Characters nginx would read as syntax or a variable in a value of ours.
_NGINX_UNSAFE = re.compile(r"[\s\"';{}$\\#]")
# The longest path of a unix socket (sun_path's 108 bytes, with its NUL).
MAX_SOCKET_PATH = 107
# Seconds systemd and supervisor wait beyond server.graceful_timeout before SIGKILL:
# the master's own shutdown after its workers'.
STOP_MARGIN = 10
# Environment variable names that hold secrets: never written into a readable file.
_SECRET_NAME = re.compile(
    r"SECRET|PASSW(?:OR)?D|TOKEN|CREDENTIAL|APIKEY|PRIVATE|(?:^|_)KEYS?(?:_|$)|(?:^|_)DSN(?:_|$)"
    r"|DATABASE__URL",
    re.I,
)
# A URL with a password in it (redis://:hunter2@host, postgresql://user:pw@host).
_URL_WITH_PASSWORD = re.compile(r"://[^/?#@\s]*:[^/?#@\s]*@")
# Control characters (a newline first): in any of the three files, one would start a
# line of the value's choosing.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Upstream:
    """One address nginx forwards to: ``host:port`` or a unix socket's path."""

    address: str
    unix: bool = False

    @property
    def nginx(self) -> str:
        return f"unix:{self.address}" if self.unix else self.address


@dataclass(frozen=True, slots=True)
class DeployValues:
    """Everything the templates use; paths are absolute."""

    name: str
    site_name: str
    env: str
    project_dir: Path
    # nginx
    server_names: tuple[str, ...]
    # security.allowed_hosts, for the message when server_names is empty.
    allowed_hosts: tuple[str, ...]
    listen: tuple[str, ...]
    tls_listen: tuple[str, ...]
    tls_certificate: Path | None
    tls_key: Path | None
    upstreams: tuple[Upstream, ...]
    # The setting they come from, for messages.
    upstreams_key: str
    upstream_keepalive_timeout: int
    static_url: str
    static_root: Path
    static_max_age: int
    static_immutable_max_age: int
    media_url: str | None
    media_root: Path
    client_max_body_size: int
    head_timeout: float
    body_timeout: float
    keepalive_timeout: float
    drain_timeout: float
    proxy_read_timeout: float
    # metrics.path and metrics.allow (as nginx's allow takes them); None: no metrics.
    metrics_path: str | None
    metrics_allow: tuple[str, ...]
    # systemd and supervisor
    user: str
    group: str
    working_directory: Path
    command: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    env_file: Path
    stop_timeout: int
    writable_paths: tuple[Path, ...]
    runtime_directory: str | None
    protect_home: str

    @property
    def variable_prefix(self) -> str:
        """The name as nginx variables take it: letters, digits and underscores, short
        enough for nginx's variables hash (its buckets hold some 50 bytes a name)."""
        return self.name.replace("-", "_")[:32]


def deploy_values(settings: Settings) -> DeployValues:
    """The values of ``settings`` (``deploy:``, ``server:``, ``static:``, ``uploads:``...)."""
    deploy = settings.deploy
    server = settings.server
    project_dir = settings.project_dir.resolve()
    name = service_name(settings)
    static = settings.section(StaticSettings)
    metrics = metrics_settings(settings)
    uploads = settings.section(UploadSettings)
    static_root = project_dir / static.root
    # What `aiosite serve` listens on, unless the site runs on other hosts too.
    addresses = deploy.upstreams or production.addresses(server, project_dir)
    upstreams = tuple(upstream(address, project_dir) for address in addresses)
    argv = command(deploy)
    uploads_root = media_root(settings).resolve()
    working_directory = (deploy.working_directory or project_dir).resolve()
    values = DeployValues(
        name=name,
        site_name=settings.site.name,
        env=settings.env,
        project_dir=project_dir,
        server_names=server_names(settings),
        allowed_hosts=tuple(settings.security.allowed_hosts),
        listen=tuple(deploy.listen),
        tls_listen=tuple(deploy.tls.listen) if deploy.tls else (),
        tls_certificate=deploy.tls.certificate if deploy.tls else None,
        tls_key=deploy.tls.key if deploy.tls else None,
        upstreams=upstreams,
        upstreams_key="deploy.upstreams" if deploy.upstreams else "server.bind",
        # nginx closes an idle connection to the site before the site does, when idle
        # and when the site stops (it drains for server.drain_timeout): a request sent
        # on a connection the site is closing would fail.
        upstream_keepalive_timeout=max(
            1, math.floor(min(server.keepalive_timeout, server.drain_timeout)) - 1
        ),
        static_url=static.url,
        static_root=static_root,
        static_max_age=static.max_age,
        static_immutable_max_age=static.immutable_max_age,
        media_url=deploy.media_url,
        media_root=uploads_root,
        client_max_body_size=deploy.client_max_body_size
        # An upload's whole body: its files plus the form's fields (docs/uploads.md).
        or server.client_max_size + uploads.max_size,
        head_timeout=server.head_timeout,
        body_timeout=server.body_timeout,
        keepalive_timeout=server.keepalive_timeout,
        drain_timeout=server.drain_timeout,
        proxy_read_timeout=deploy.proxy_read_timeout,
        metrics_path=metrics.path if metrics else None,
        metrics_allow=tuple(str(network) for network in metrics.allow) if metrics else (),
        user=deploy.user,
        group=deploy.group,
        working_directory=working_directory,
        command=argv,
        environment=environment(settings),
        env_file=deploy.env_file or Path("/etc") / name / "env",
        stop_timeout=server.graceful_timeout + STOP_MARGIN,
        writable_paths=writable_paths(settings, uploads_root, upstreams),
        runtime_directory=name if any(_in_run_dir(u, name) for u in upstreams) else None,
        protect_home=_protect_home(working_directory, argv),
    )
    _check_control_characters(values)
    return values


def service_name(settings: Settings) -> str:
    """``deploy.name``, else the project's package, else a slug of ``site.name``."""
    if settings.deploy.name:
        return settings.deploy.name
    base = settings.site.package or settings.site.name
    slug = re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-_")
    return slug or "aiosite"


def server_names(settings: Settings) -> tuple[str, ...]:
    """``deploy.server_names``, else the allowed hosts a visitor can use (none when
    they are all local names: only nginx's file needs them, see check_nginx_values)."""
    names = settings.deploy.server_names
    if names is None:
        names = [
            host
            for host in settings.security.allowed_hosts
            if host not in _LOCAL_HOSTS
            and not host.endswith(".localhost")
            and not host.startswith("127.")
        ]
    return tuple(names)


def metrics_settings(settings: Settings) -> MetricsSettings | None:
    """The ``metrics:`` section when the site serves metrics (its battery may be left
    out of the site, or metrics.enabled off)."""
    try:
        metrics = settings.section(MetricsSettings)
    except ImproperlyConfigured:
        return None
    return metrics if metrics.enabled else None


def upstream(address: str, project_dir: Path) -> Upstream:
    """nginx's view of a listening address: a wildcard host is reached on loopback."""
    if address.startswith("unix:"):
        path = Path(address.removeprefix("unix:"))
        return Upstream(str(path if path.is_absolute() else project_dir / path), unix=True)
    host, _, port = address.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return Upstream(f"{host}:{port}")


def command(deploy: DeploySettings) -> tuple[str, ...]:
    """``deploy.command`` split into words, else this virtualenv's ``aiosite serve``."""
    if deploy.command:
        return tuple(shlex.split(deploy.command))
    # The script beside the running interpreter (not resolved: a virtualenv's python is
    # a symlink out of it).
    script = Path(sys.executable).parent / "aiosite"
    if script.is_file():
        return (str(script), "serve")
    return (sys.executable, "-m", "aiosite", "serve")


def environment(settings: Settings) -> tuple[tuple[str, str], ...]:
    """``AIOSITE_ENV`` and ``deploy.environment``, refusing what looks like a secret."""
    extra = settings.deploy.environment
    for key, value in extra.items():
        if _SECRET_NAME.search(key):
            why = "looks like a secret"
        elif _URL_WITH_PASSWORD.search(value):
            why = "holds a URL with a password"
        else:
            continue
        env_file = settings.deploy.env_file or f"/etc/{service_name(settings)}/env"
        raise ImproperlyConfigured(
            f"deploy.environment: {key} {why}, and the generated files are readable by "
            f"anyone on the machine: put it in the EnvironmentFile {env_file} "
            "(deploy.env_file) instead"
        )
    return (("AIOSITE_ENV", settings.env), *((k, v) for k, v in extra.items()))


def writable_paths(
    settings: Settings, uploads_root: Path, upstreams: tuple[Upstream, ...]
) -> tuple[Path, ...]:
    """Where the service writes: uploads, the project's var/ (metrics, pid file) and
    the directories of its unix sockets and pid file."""
    project_dir = settings.project_dir.resolve()
    paths = [uploads_root, project_dir / "var"]
    metrics = getattr(settings, "metrics", None)
    metrics_dir = getattr(metrics, "multiprocess_dir", None)
    if metrics_dir:
        paths.append(project_dir / Path(metrics_dir))
    pid_file = settings.server.pid_file
    if pid_file:
        paths.append((project_dir / Path(pid_file)).parent)
    name = service_name(settings)
    paths.extend(Path(u.address).parent for u in upstreams if u.unix and not _in_run_dir(u, name))
    # One entry per tree: a path below another is writable already.
    unique: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(kept) for kept in unique):
            unique.append(path)
    return tuple(unique)


def _in_run_dir(upstream: Upstream, name: str) -> bool:
    # systemd makes /run/<name> (RuntimeDirectory=) for the service's sockets.
    return upstream.unix and PurePosixPath(upstream.address).parent == PurePosixPath("/run", name)


def _protect_home(working_directory: Path, argv: tuple[str, ...]) -> str:
    # ProtectHome=yes hides /home, /root and /run/user entirely: a project or virtualenv
    # there still needs to be read.
    homes = (Path("/home"), Path("/root"), Path("/run/user"))
    used = (working_directory, Path(argv[0]))
    return "read-only" if any(p.is_relative_to(h) for p in used for h in homes) else "yes"


def _check_control_characters(values: DeployValues) -> None:
    shown = {
        "site.name": (values.site_name,),
        "the environment's name (--env, AIOSITE_ENV)": (values.env,),
        "the project's directory": (str(values.project_dir),),
        "deploy.name": (values.name,),
        "deploy.user": (values.user,),
        "deploy.group": (values.group,),
        "deploy.working_directory": (str(values.working_directory),),
        "deploy.command": values.command,
        "deploy.environment": tuple(k + v for k, v in values.environment),
        "deploy.env_file": (str(values.env_file),),
        "server.pid_file, metrics.multiprocess_dir or uploads.media_root": tuple(
            str(path) for path in values.writable_paths
        ),
    }
    for key, entries in shown.items():
        if any(_CONTROL.search(entry) for entry in entries):
            raise ImproperlyConfigured(
                f"{key}: holds a newline or another control character, which would start "
                "a line of its own in the generated files: remove it"
            )


def check_nginx_values(values: DeployValues) -> None:
    """Refuse what nginx's file cannot hold: no public host name, a unix socket's path
    too long, a value nginx would read as syntax."""
    if not values.server_names:
        raise ImproperlyConfigured(
            "deploy.server_names: none, as security.allowed_hosts lists only local names "
            f"({', '.join(values.allowed_hosts) or 'none'}): list the site's host names "
            f"(e.g. [example.com, www.example.com]) in deploy.server_names or "
            f"security.allowed_hosts of config/{values.env}.yaml, or in its environment "
            "file (AIOSITE_SECURITY__ALLOWED_HOSTS)"
        )
    for socket in (u.address for u in values.upstreams if u.unix):
        if len(socket.encode()) > MAX_SOCKET_PATH:
            raise ImproperlyConfigured(
                f"{values.upstreams_key}: the unix socket {socket} has a path of "
                f"{len(socket.encode())} bytes, longer than the {MAX_SOCKET_PATH} a socket "
                "may have: choose a shorter one, e.g. unix:/run/NAME/site.sock"
            )
    shown = {
        "deploy.server_names": values.server_names,
        "deploy.listen": values.listen,
        "deploy.tls.listen": values.tls_listen,
        values.upstreams_key: tuple(u.address for u in values.upstreams),
        "static.url": (values.static_url,),
        "static.root": (str(values.static_root),),
        "uploads.media_root": (str(values.media_root),),
        "deploy.media_url": (values.media_url or "",),
        "deploy.tls": (str(values.tls_certificate or ""), str(values.tls_key or "")),
        "metrics.path": (values.metrics_path or "",),
    }
    for key, entries in shown.items():
        for entry in entries:
            if _NGINX_UNSAFE.search(entry):
                raise ImproperlyConfigured(
                    f"{key}: {entry!r} holds a space, quote, ';', '{{', '}}', '#', '$' or "
                    "backslash, which nginx would read as syntax: choose another"
                )
