"""The ``auth:`` settings section of aiosite.contrib.auth, and its deployment check."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from pydantic import Field

from aiosite import DeployProblem, Section, settings_of

# OWASP's weakest recommended argon2id parameters: 7 MiB with 5 passes ... 46 MiB with 1;
# memory times passes stays above about 35 MiB in all of them.
_MIN_HASHER_MEMORY = 7168
_MIN_HASHER_WORK = 35_840


class PasswordHasherSettings(Section):
    """argon2id parameters; a stored hash made with others is rehashed at login."""

    time_cost: int = Field(default=3, ge=1)
    memory_cost: int = Field(default=65_536, ge=8)  # KiB
    parallelism: int = Field(default=4, ge=1)


class AuthSettings(Section):
    """aiosite.contrib.auth: users, login, permissions (docs/auth.md)."""

    # A route name or a path: where login_required sends anonymous users.
    login_url: str = "auth:login"
    login_redirect: str = "/"
    logout_redirect: str = "/"
    # Whether anyone may sign up at /auth/register.
    registration: bool = True
    password_min_length: int = Field(default=8, ge=1)
    hasher: PasswordHasherSettings = PasswordHasherSettings()
    # Failed logins allowed in throttle_window seconds, per account and per client IP.
    throttle_account: int = Field(default=5, ge=1)
    throttle_ip: int = Field(default=20, ge=1)
    throttle_window: int = Field(default=900, ge=1)

    def deploy_problems(self) -> Iterator[DeployProblem]:
        """A password hasher too fast for a public site."""
        hasher = self.hasher
        work = hasher.memory_cost * hasher.time_cost
        if hasher.memory_cost < _MIN_HASHER_MEMORY or work < _MIN_HASHER_WORK:
            yield (
                "warning",
                f"auth.hasher: time_cost {hasher.time_cost} with memory_cost "
                f"{hasher.memory_cost} KiB is below OWASP's minimum for argon2id (time_cost 2 "
                "with 19456 KiB), so a stolen password table is quick to crack: remove "
                "auth.hasher from the settings of this environment (the defaults are strong; "
                "fast ones belong in test.yaml)",
            )


def auth_settings(target: web.Request | web.Application) -> AuthSettings:
    """The site's ``auth:`` section, from a request or the application."""
    return settings_of(target).section(AuthSettings)
