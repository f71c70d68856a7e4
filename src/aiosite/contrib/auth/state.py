"""What the auth app keeps on the site's application: its hasher and the permissions
the site's models give, made once when the site is assembled."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from aiosite import AppRegistry, Settings

from .passwords import Passwords
from .permissions import registry_permissions


@dataclass(frozen=True, slots=True)
class AuthState:
    passwords: Passwords
    permissions: frozenset[str]


AUTH: web.AppKey[AuthState] = web.AppKey("aiosite.contrib.auth", AuthState)


def setup(app: web.Application, settings: Settings, registry: AppRegistry) -> None:
    """The auth app's ``App(setup=...)`` hook."""
    # The hash a login for an unknown username is checked against is made with the
    # hasher, without hashing (passwords.unmatchable_hash): no startup work.
    app[AUTH] = AuthState(Passwords(settings), registry_permissions(registry))


def auth_state(target: web.Request | web.Application) -> AuthState:
    found = target.config_dict if isinstance(target, web.Request) else target
    try:
        state: AuthState = found[AUTH]
    except KeyError:
        raise RuntimeError(
            "aiosite.contrib.auth is not set up on this site; add it to apps: in "
            "config/default.yaml"
        ) from None
    return state


def passwords_of(target: web.Request | web.Application) -> Passwords:
    return auth_state(target).passwords


def site_permissions(target: web.Request | web.Application) -> frozenset[str]:
    """Every permission the site's models give: ``blog.add_post``, ``blog.change_post``...
    (the ``known`` argument of ``grant``)."""
    return auth_state(target).permissions
