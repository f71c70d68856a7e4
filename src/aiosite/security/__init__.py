"""Security defaults: allowed hosts, security headers and CSRF, as hooks of the core.

``setup`` runs after the sessions battery's: the allowed-hosts check goes first of all
request hooks (a refused host costs nothing else), the CSRF check after the sessions
hook (it reads the session), and the security headers are a response hook.
"""

from __future__ import annotations

from aiohttp import web

from aiosite.exceptions import ImproperlyConfigured
from aiosite.keys import CORE, CSRF_CHECK, TEMPLATES
from aiosite.security.csrf import (
    csrf_input_global,
    csrf_token_global,
    get_csrf_token,
    rotate_csrf_token,
)
from aiosite.security.exempt import csrf_exempt
from aiosite.security.guard import CsrfGuard, check_streamed_token
from aiosite.security.headers import headers_hook
from aiosite.security.hosts import AllowedHosts
from aiosite.security.https import client_address, is_secure
from aiosite.settings import Settings, secret_key_problems


def setup(app: web.Application, settings: Settings) -> None:
    core = app[CORE]
    core.request_hooks.insert(0, AllowedHosts(settings.security.allowed_hosts))
    core.request_hooks.append(CsrfGuard(settings))
    core.response_hooks.append(headers_hook(settings))
    app[CSRF_CHECK] = check_streamed_token
    templates = app.get(TEMPLATES)
    if templates is not None:
        templates.env.globals.update(csrf_token=csrf_token_global, csrf_input=csrf_input_global)


def refuse_public_site_without_secret_key(settings: Settings) -> None:
    """A site outside development and test needs a secret key of its own, whatever
    uses it (cookie or Redis sessions, auth's session hashes)."""
    if settings.is_local:
        return
    refusal = f"; the {settings.env!r} environment refuses to start without a secret key of its own"
    problems = secret_key_problems(settings)
    if problems:
        raise ImproperlyConfigured("\n".join(problem + refusal for problem in problems))


__all__ = [
    "client_address",
    "csrf_exempt",
    "get_csrf_token",
    "is_secure",
    "refuse_public_site_without_secret_key",
    "rotate_csrf_token",
    "setup",
]
