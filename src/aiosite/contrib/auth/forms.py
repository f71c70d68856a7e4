"""The auth forms, checked by hand: what was typed, and one message per field.

Small on purpose; they can move onto aiosite.forms once that battery settles. Passwords
are never sent back into a form: a re-displayed form keeps the other fields only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from .models import EMAIL_MAX, USERNAME_MAX
from .passwords import PASSWORD_MAX, password_problem

# Letters, digits and @ . + - _ (Django's rule): safe in URLs and unambiguous to read.
USERNAME_RE = re.compile(r"^[\w.@+-]+\Z")
# A light check: something@something.something; the mail server has the last word.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")


def _text(data: Mapping[str, object], name: str) -> str:
    value = data.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _secret(data: Mapping[str, object], name: str) -> str:
    # Passwords are kept as typed: spaces may be part of them.
    value = data.get(name, "")
    return value if isinstance(value, str) else ""


def normalize_username(username: str) -> str:
    """NFKC, so that look-alike forms of the same characters are one username."""
    return unicodedata.normalize("NFKC", username.strip())


def username_problem(username: str) -> str | None:
    if not username:
        return "Enter a username."
    if len(username) > USERNAME_MAX:
        return f"Use at most {USERNAME_MAX} characters."
    if not USERNAME_RE.match(username):
        return "Use only letters, digits and the characters @ . + - _"
    return None


def email_problem(email: str) -> str | None:
    if not email:
        return None
    if len(email) > EMAIL_MAX:
        return f"Use at most {EMAIL_MAX} characters."
    if not EMAIL_RE.match(email):
        return "Enter an email address such as name@example.com, or leave it empty."
    return None


@dataclass
class LoginForm:
    username: str = ""
    password: str = ""
    next: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> LoginForm:
        return cls(
            username=normalize_username(_text(data, "username")),
            password=_secret(data, "password"),
            next=_text(data, "next"),
        )

    def validate(self) -> bool:
        errors: dict[str, str] = {}
        if not self.username:
            errors["username"] = "Enter your username."
        elif len(self.username) > USERNAME_MAX:
            errors["username"] = f"A username has at most {USERNAME_MAX} characters."
        if not self.password:
            errors["password"] = "Enter your password."  # noqa: S105 - a message
        elif len(self.password) > PASSWORD_MAX:
            errors["password"] = f"A password has at most {PASSWORD_MAX} characters."
        self.errors = errors
        return not errors


@dataclass
class RegisterForm:
    username: str = ""
    email: str = ""
    password1: str = ""
    password2: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> RegisterForm:
        return cls(
            username=normalize_username(_text(data, "username")),
            email=_text(data, "email"),
            password1=_secret(data, "password1"),
            password2=_secret(data, "password2"),
        )

    def validate(self, *, min_length: int) -> bool:
        errors: dict[str, str] = {}
        problem = username_problem(self.username)
        if problem:
            errors["username"] = problem
        problem = email_problem(self.email)
        if problem:
            errors["email"] = problem
        errors.update(
            _new_password_errors(self.password1, self.password2, self.username, min_length)
        )
        self.errors = errors
        return not errors


@dataclass
class PasswordChangeForm:
    old_password: str = ""
    new_password1: str = ""
    new_password2: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> PasswordChangeForm:
        return cls(
            old_password=_secret(data, "old_password"),
            new_password1=_secret(data, "new_password1"),
            new_password2=_secret(data, "new_password2"),
        )

    def validate(self, *, username: str, min_length: int) -> bool:
        errors: dict[str, str] = {}
        if not self.old_password:
            errors["old_password"] = "Enter your current password."  # noqa: S105 - a message
        new = _new_password_errors(self.new_password1, self.new_password2, username, min_length)
        errors.update({f"new_{name}": message for name, message in new.items()})
        if "new_password1" not in errors and self.new_password1 == self.old_password:
            errors["new_password1"] = "Choose a password other than your current one."
        self.errors = errors
        return not errors


def _new_password_errors(
    password1: str, password2: str, username: str, min_length: int
) -> dict[str, str]:
    if not password1:
        return {"password1": "Choose a password."}
    problem = password_problem(password1, username=username, min_length=min_length)
    if problem:
        return {"password1": problem}
    if password2 != password1:
        return {"password2": "The two passwords differ; type the same password twice."}
    return {}
