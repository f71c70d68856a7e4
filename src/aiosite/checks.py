"""``aiosite check``: problems a site would otherwise show only at run time.

``check --deploy`` adds the deployment checks: settings that are fine on a developer's
machine and dangerous on a public site (docs/deployment-checks.md lists them). Each
problem is one line that starts with the setting's key and ends with what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web

from aiosite.apps import APPS
from aiosite.db.config import DatabaseSettings
from aiosite.exceptions import AiositeError
from aiosite.security.secret_key import fallback_key_problems, secret_key_problem
from aiosite.sessions.config import SessionSettings, cookie_secure
from aiosite.settings import Section, Settings, hide_password
from aiosite.site import create_site
from aiosite.web.template_check import template_problems


@dataclass(frozen=True, slots=True)
class Problem:
    level: Literal["error", "warning"]
    message: str
    # The dotted setting the problem is about (``debug.enabled``), where it names one.
    key: str = ""

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def run_checks(settings: Settings, *, deploy: bool = False) -> list[Problem]:
    """Build the site from ``settings`` and inspect its apps, routes and templates;
    with ``deploy``, first check that the settings are fit for a public site."""
    found = deploy_checks(settings) if deploy else []
    try:
        app = create_site(settings)
    except AiositeError as exc:
        built = [Problem("error", line, _key_of(line)) for line in str(exc).splitlines()]
        # The site refuses to build over some settings the deployment checks have named
        # already (a public site's secret key): one line per key.
        named = {problem.key for problem in found if problem.level == "error"}
        return [*found, *(p for p in built if not p.key or p.key not in named)]
    return [
        *found,
        *_check_templates(app, settings.project_dir),
        *_check_namespaces(app),
    ]


def _key_of(message: str) -> str:
    """The dotted settings key a message of a section or a settings error starts with
    (``security.secret_key: ...``), by the convention of their messages."""
    head = message.partition(": ")[0]
    return head if "." in head and " " not in head else ""


def _check_templates(app: web.Application, project_dir: Path) -> list[Problem]:
    # Every template the site can load is compiled; url()/static() calls with literal
    # arguments must name a route and a static file that exist.
    return [Problem("error", message) for message in template_problems(app, project_dir)]


def _check_namespaces(app: web.Application) -> list[Problem]:
    # An app's templates and static files live under a folder named after the app, so
    # that two apps' "index.html" do not shadow each other.
    problems = []
    for loaded in app[APPS]:
        for kind in ("templates", "static"):
            directory = loaded.directory(kind)
            if directory is None:
                continue
            stray = sorted(
                p.name
                for p in directory.iterdir()
                if p.name != loaded.name and not p.name.startswith(".")
            )
            if stray:
                problems.append(
                    Problem(
                        "warning",
                        f"app {loaded.name!r}: {kind}/ holds {', '.join(stray)} outside "
                        f"{kind}/{loaded.name}/; other apps or the project may shadow them",
                    )
                )
    return problems


# --- check --deploy -------------------------------------------------------------------

# Names that reach only this machine: a public site answering nothing else is unreachable.
_LOCAL_HOSTS = frozenset({"localhost", ".localhost", "127.0.0.1", "[::1]", "::1"})
_HOSTS_EXAMPLE = "e.g. allowed_hosts: [example.com, www.example.com]"


def deploy_checks(settings: Settings) -> list[Problem]:
    """What makes ``settings`` unfit for a public site: errors first, then warnings
    (the site's own, then each section's ``deploy_problems``)."""
    found = [*_errors(settings), *_warnings(settings)]
    for name in type(settings).section_names.values():
        section: Section = getattr(settings, name)
        found.extend(
            Problem(level, message, _key_of(message))
            for level, message in section.deploy_problems()
        )
    return sorted(found, key=lambda problem: problem.level != "error")


def _errors(settings: Settings) -> Iterator[Problem]:
    file = f"config/{settings.env}.yaml"
    if settings.debug.enabled:
        yield Problem(
            "error",
            "debug.enabled: on; every visitor would see tracebacks, settings and the debug "
            f"toolbar: set debug: false in {file} (or AIOSITE_DEBUG__ENABLED=false, if the "
            "environment sets it)",
            "debug.enabled",
        )
    if (problem := secret_key_problem(settings)) is not None:
        yield Problem("error", problem, "security.secret_key")
    for problem in fallback_key_problems(settings):
        yield Problem("error", problem, "security.secret_key_fallbacks")
    yield from _allowed_hosts(settings.security.allowed_hosts, file)
    yield from _session_cookie(settings)


def _allowed_hosts(hosts: list[str], file: str) -> Iterator[Problem]:
    if not hosts:
        yield Problem(
            "error",
            "security.allowed_hosts: empty, so every request gets 400: list the site's host "
            f"names in {file}, {_HOSTS_EXAMPLE}",
            key="security.allowed_hosts",
        )
    elif "*" in hosts:
        yield Problem(
            "error",
            'security.allowed_hosts: "*" accepts any Host header, which lets others point '
            "their names at the site and poison links and caches built from it: list the "
            f"site's host names instead, {_HOSTS_EXAMPLE}",
            key="security.allowed_hosts",
        )
    elif all(_is_local_host(host) for host in hosts):
        yield Problem(
            "error",
            f"security.allowed_hosts: only local names ({', '.join(hosts)}), so visitors who "
            f"use the site's domain get 400: list its host names in {file}, {_HOSTS_EXAMPLE}",
            key="security.allowed_hosts",
        )


def _is_local_host(host: str) -> bool:
    return host in _LOCAL_HOSTS or host.endswith(".localhost") or host.startswith("127.")


def _session_cookie(settings: Settings) -> Iterator[Problem]:
    session = settings.section(SessionSettings)
    # The rule of the sessions battery: null means Secure outside development and test.
    secure = cookie_secure(settings)
    if not secure:
        if session.cookie_secure is None:
            why = f"null, which is off in the {settings.env!r} environment"
            fix = "deploy with an environment other than development and test, where null is on"
        else:
            why = "false"
            fix = "set it to true (or remove it: null is on outside development and test)"
        yield Problem(
            "error",
            f"session.cookie_secure: {why}, so the session cookie would also travel over "
            f"plain HTTP, where anyone on the network can steal it: {fix}, and serve the "
            "site over HTTPS",
            key="session.cookie_secure",
        )
    if session.cookie_samesite == "None" and not secure:
        yield Problem(
            "error",
            "session.cookie_samesite: None without a Secure cookie; browsers drop such "
            "cookies, so no session survives a request: use Lax (the default) or make the "
            "cookie Secure",
            key="session.cookie_samesite",
        )


def _warnings(settings: Settings) -> Iterator[Problem]:
    file = f"config/{settings.env}.yaml"
    security = settings.security
    if security.hsts_seconds == 0:
        yield Problem(
            "warning",
            "security.hsts_seconds: 0, so browsers are not told to use HTTPS only; once the "
            "whole site is served over HTTPS, set it to 31536000 (a year), or remove it",
            key="security.hsts_seconds",
        )
    policy = (security.content_security_policy or "").strip()
    if not policy:
        yield Problem(
            "warning",
            "security.content_security_policy: empty, so an injected script runs unhindered: "
            "remove the setting to send aiosite's default policy, or write one for the site",
            key="security.content_security_policy",
        )
    if security.frame_options is None and "frame-ancestors" not in policy.lower():
        yield Problem(
            "warning",
            "security.frame_options: null and the content security policy has no "
            "frame-ancestors, so other sites may show these pages in a frame (clickjacking): "
            "set frame_options: DENY (or SAMEORIGIN), or add frame-ancestors 'none' to the policy",
            key="security.frame_options",
        )
    if not security.trust_proxy_headers and settings.server.host in {"127.0.0.1", "localhost"}:
        yield Problem(
            "warning",
            f"security.trust_proxy_headers: false while server.host is {settings.server.host}, "
            "so visitors reach the site through a proxy on this machine, yet it takes every "
            "request for plain HTTP and never sends HSTS: if the proxy sets X-Forwarded-Proto "
            "(nginx: proxy_set_header X-Forwarded-Proto $scheme), set trust_proxy_headers: "
            f"true in {file}",
            key="security.trust_proxy_headers",
        )
    if security.trust_proxy_headers:
        everyone = [str(net) for net in security.trusted_proxies if net.prefixlen == 0]
        if everyone:
            yield Problem(
                "warning",
                f"security.trusted_proxies: {', '.join(everyone)} trusts every address, so any "
                "client that reaches the site directly can claim HTTPS and another address "
                "(X-Forwarded-Proto, X-Forwarded-For): list only the proxies' addresses or "
                f"networks in {file}, e.g. trusted_proxies: [10.0.0.5, 10.0.1.0/24]",
            )
    database = settings.section(DatabaseSettings)
    if database.url.startswith("sqlite"):
        yield Problem(
            "warning",
            f"database.url: SQLite ({hide_password(database.url)}) lets one request write at "
            "a time and lives on one machine: use PostgreSQL, passing "
            "AIOSITE_DATABASE__URL=postgresql://USER:PASSWORD@HOST:5432/DBNAME",
            key="security.trusted_proxies",
        )
    if database.echo:
        yield Problem(
            "warning",
            "database.echo: on, so every SQL statement and its parameters (personal data, "
            f"password hashes) go to the log: set echo: false in {file}",
            key="database.echo",
        )
    if not settings.server.access_log:
        yield Problem(
            "warning",
            "server.access_log: off, so requests leave no trace to investigate an incident "
            f"with: set access_log: true in {file}, unless the proxy in front logs them",
            key="server.access_log",
        )
