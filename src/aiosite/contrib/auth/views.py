"""The auth pages: log in, log out, register, change password.

Forms follow aiosite's pattern: GET shows the form; a POST with errors shows it again
(400, or 429 while logins are throttled) with the typed values kept, except passwords;
a POST that succeeds redirects with 303 See Other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from aiosite import db_session, flash, read_form, render, session_scope

from . import throttle
from .config import auth_settings
from .decorators import login_required
from .forms import LoginForm, PasswordChangeForm, RegisterForm
from .models import User
from .redirects import resolve, safe_next
from .state import passwords_of
from .users import (
    authenticate,
    current_user,
    login,
    logout,
    set_password,
    update_session_hash,
    username_taken,
)

# The key of errors about the whole form rather than one field.
FORM_ERROR = "form"
WRONG_CREDENTIALS = "Enter a correct username and password. Both are case-sensitive."
USERNAME_TAKEN = "That username is taken; choose another."


async def _page(
    request: web.Request,
    name: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    settings = auth_settings(request)
    extra = {"registration": settings.registration, "min_length": settings.password_min_length}
    return await render(request, name, {**extra, **context}, status=status, headers=headers)


class LoginView(web.View):
    async def get(self) -> web.Response:
        form = LoginForm(next=safe_next(self.request.query.get("next")) or "")
        return await _page(self.request, "auth/login.html", {"form": form})

    async def post(self) -> web.Response:
        request = self.request
        settings = auth_settings(request)
        form = LoginForm.from_data(await read_form(request))
        form.next = safe_next(form.next) or ""
        if not form.validate():
            return await _page(request, "auth/login.html", {"form": form}, status=400)
        session = db_session(request)
        ip = throttle.client_ip(request)
        # The attempt counts as a failure, committed before the (slow) password check, so
        # that parallel guesses see each other; a successful login clears it below.
        async with session_scope(request) as attempt:
            attempt_id = await throttle.record_failure(attempt, settings, form.username, ip)
        refused = await throttle.check(session, settings, form.username, ip, counted=1)
        if refused is not None:
            await throttle.forget_attempt(session, attempt_id)
            # Refused before the password is checked: while throttled, a right guess and a
            # wrong one look (and take) the same.
            form.errors[FORM_ERROR] = refused.message
            headers = {"Retry-After": str(refused.retry_after)}
            return await _page(
                request, "auth/login.html", {"form": form}, status=429, headers=headers
            )
        user = await authenticate(request, form.username, form.password)
        if user is None:
            form.errors[FORM_ERROR] = WRONG_CREDENTIALS
            return await _page(request, "auth/login.html", {"form": form}, status=400)
        await throttle.clear_account(session, form.username)
        await login(request, user)
        await flash(request, f"You are logged in as {user.username}.", "success")
        raise web.HTTPSeeOther(form.next or resolve(request, settings.login_redirect))


async def logout_view(request: web.Request) -> web.Response:
    await logout(request)
    await flash(request, "You are logged out.", "info")
    raise web.HTTPSeeOther(resolve(request, auth_settings(request).logout_redirect))


def _registration_open(request: web.Request) -> None:
    if not auth_settings(request).registration:
        raise web.HTTPNotFound(text="This site does not take new accounts.")


class RegisterView(web.View):
    async def get(self) -> web.Response:
        _registration_open(self.request)
        return await _page(self.request, "auth/register.html", {"form": RegisterForm()})

    async def post(self) -> web.Response:
        request = self.request
        _registration_open(request)
        settings = auth_settings(request)
        form = RegisterForm.from_data(await read_form(request))
        session = db_session(request)
        if form.validate(min_length=settings.password_min_length) and await username_taken(
            session, form.username
        ):
            form.errors["username"] = USERNAME_TAKEN
        if form.errors:
            return await _page(request, "auth/register.html", {"form": form}, status=400)
        user = User(username=form.username, email=form.email)
        await set_password(request, user, form.password1)
        session.add(user)
        # Another request may take the name between the check and here: the unique
        # constraint then refuses it, answered 409 by aiosite.
        await session.flush()
        await login(request, user)
        await flash(request, f"Welcome, {user.username}: your account is ready.", "success")
        raise web.HTTPSeeOther(resolve(request, settings.login_redirect))


class PasswordChangeView(web.View):
    @login_required
    async def get(self) -> web.Response:
        return await _page(
            self.request, "auth/password_change.html", {"form": PasswordChangeForm()}
        )

    @login_required
    async def post(self) -> web.Response:
        request = self.request
        user = await current_user(request)
        if not isinstance(user, User):  # pragma: no cover - login_required saw to it
            raise web.HTTPUnauthorized()
        form = PasswordChangeForm.from_data(await read_form(request))
        min_length = auth_settings(request).password_min_length
        if form.validate(username=user.username, min_length=min_length) and not (
            await passwords_of(request).verify(user.password, form.old_password)
        ):
            form.errors["old_password"] = "That is not your current password."  # noqa: S105
        if form.errors:
            context = {"form": form}
            return await _page(request, "auth/password_change.html", context, status=400)
        await set_password(request, user, form.new_password1)
        # Every other session of the user ends (its hash no longer matches); this one
        # goes on, under a new identity.
        await update_session_hash(request, user)
        await flash(request, "Your password is changed.", "success")
        raise web.HTTPSeeOther(resolve(request, auth_settings(request).login_redirect))
