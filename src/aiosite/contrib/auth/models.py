"""The auth tables: users, groups, permissions, and failed logins for throttling.

Tables are prefixed ``auth_``. Relationships name their classes rather than class
names, so a project may have models called ``User`` or ``Group`` of its own. They are
``lazy="raise"``: async SQLAlchemy cannot load them on attribute access, so code that
needs them says so (``selectinload``) or asks ``get_permissions``, and a forgotten load
fails loudly.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, ForeignKey, Index, String, Table, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aiosite import Model, UtcDateTime

USERNAME_MAX = 150
EMAIL_MAX = 254
GROUP_NAME_MAX = 150
CODENAME_MAX = 255
# A stored password that no password matches (``createsuperuser`` never makes one, but
# an account created by code without a password gets it).
UNUSABLE_PASSWORD = "!"  # noqa: S105 - no hash starts with it


def _now() -> datetime:
    return datetime.now(UTC)


user_groups = Table(
    "auth_user_groups",
    Model.metadata,
    Column("user_id", ForeignKey("auth_user.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "group_id", ForeignKey("auth_group.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
)

group_permissions = Table(
    "auth_group_permissions",
    Model.metadata,
    Column("group_id", ForeignKey("auth_group.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "permission_id",
        ForeignKey("auth_permission.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)

user_permissions = Table(
    "auth_user_permissions",
    Model.metadata,
    Column("user_id", ForeignKey("auth_user.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "permission_id",
        ForeignKey("auth_permission.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class Permission(Model):
    """One permission, e.g. ``blog.change_post``; rows are made when first granted."""

    __tablename__ = "auth_permission"

    id: Mapped[int] = mapped_column(primary_key=True)
    codename: Mapped[str] = mapped_column(String(CODENAME_MAX), unique=True)


class Group(Model):
    """A named set of permissions that users belong to, e.g. ``editors``."""

    __tablename__ = "auth_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(GROUP_NAME_MAX), unique=True)

    permissions: Mapped[list[Permission]] = relationship(
        Permission, secondary=group_permissions, lazy="raise", passive_deletes=True
    )
    users: Mapped[list[User]] = relationship(
        lambda: User,
        secondary=user_groups,
        back_populates="groups",
        lazy="raise",
        passive_deletes=True,
    )


class User(Model):
    """An account. ``password`` holds an argon2id hash, never the password."""

    __tablename__ = "auth_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), default="", server_default="")
    password: Mapped[str] = mapped_column(String(255), default=UNUSABLE_PASSWORD)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    # May use the admin pages (aiosite.contrib.admin).
    is_staff: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # Has every permission without it being granted.
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    last_login: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    created: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=_now, server_default=text("CURRENT_TIMESTAMP")
    )

    groups: Mapped[list[Group]] = relationship(
        Group, secondary=user_groups, back_populates="users", lazy="raise", passive_deletes=True
    )
    permissions: Mapped[list[Permission]] = relationship(
        Permission, secondary=user_permissions, lazy="raise", passive_deletes=True
    )

    # Lets the plain annotation below stay out of the mapping.
    __allow_unmapped__ = True
    # The user's permission names once loaded by get_permissions() (not a column).
    _loaded_permissions: frozenset[str] | None = None

    is_authenticated = True
    is_anonymous = False

    def has_perm(self, perm: str) -> bool:
        """Whether the user has ``perm`` (``"blog.change_post"``): superusers have every
        permission, inactive users none; others need their permissions loaded first
        (``await get_permissions(session, user)``, or a view under
        ``@permission_required``)."""
        if not self.is_active:
            return False
        if self.is_superuser:
            return True
        if self._loaded_permissions is None:
            raise RuntimeError(
                f"the permissions of user {self.username!r} are not loaded; "
                "`await get_permissions(session, user)` (or `await user_has_perm(request, "
                "perm)`) first, and use has_perm(...) in templates"
            )
        return perm in self._loaded_permissions

    def __str__(self) -> str:
        return self.username


class LoginFailure(Model):
    """A failed login, counted per account and per client IP for throttling.

    In the database rather than in memory, so that every worker process sees the same
    counts; rows older than ``auth.throttle_window`` are pruned as new ones arrive.
    """

    __tablename__ = "auth_login_failure"
    __table_args__ = (
        Index("ix_auth_login_failure_username_created", "username", "created"),
        Index("ix_auth_login_failure_ip_created", "ip", "created"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Normalised (lower case), whether or not such a user exists.
    username: Mapped[str] = mapped_column(String(USERNAME_MAX))
    ip: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UtcDateTime(), default=_now, index=True)
