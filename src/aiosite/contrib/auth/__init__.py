"""aiosite.contrib.auth: users, login pages, permissions and commands (docs/auth.md).

List it in ``apps:`` like any app, then write and apply its tables' migration
(``aiosite db makemigrations -m auth``, ``aiosite db migrate``)::

    apps:
      - mysite.home
      - aiosite.contrib.auth
"""

from aiosite import App

from .config import AuthSettings, PasswordHasherSettings, auth_settings
from .decorators import login_needed, login_required, permission_required
from .models import Group, LoginFailure, Permission, User
from .passwords import Passwords, password_problem
from .permissions import (
    ACTIONS,
    UnknownPermission,
    add_to_group,
    get_or_create_group,
    get_permissions,
    grant,
    remove_from_group,
    revoke,
)
from .ratelimit_keys import by_user_or_address
from .redirects import safe_next
from .state import passwords_of, setup, site_permissions
from .templating import has_perm_global, user_context
from .users import (
    CURRENT_USER,
    AnonymousUser,
    AnyUser,
    authenticate,
    current_user,
    login,
    logout,
    set_password,
    update_session_hash,
    user_has_perm,
)

app = App(
    "auth",
    prefix="/auth",
    context_processors=[user_context],
    template_globals={"has_perm": has_perm_global},
    # Imported by the command line only: the site itself never imports Typer.
    commands="aiosite.contrib.auth.commands:commands",
    setup=setup,
    settings=AuthSettings,
)

__all__ = [
    "ACTIONS",
    "CURRENT_USER",
    "AnonymousUser",
    "AnyUser",
    "AuthSettings",
    "Group",
    "LoginFailure",
    "PasswordHasherSettings",
    "Passwords",
    "Permission",
    "UnknownPermission",
    "User",
    "add_to_group",
    "app",
    "auth_settings",
    "authenticate",
    "by_user_or_address",
    "current_user",
    "get_or_create_group",
    "get_permissions",
    "grant",
    "login",
    "login_needed",
    "login_required",
    "logout",
    "password_problem",
    "passwords_of",
    "permission_required",
    "remove_from_group",
    "revoke",
    "safe_next",
    "set_password",
    "site_permissions",
    "update_session_hash",
    "user_has_perm",
]
