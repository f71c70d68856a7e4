"""Permissions: ``app.action_model`` names, granted to users and groups.

Every model of every app the site lists has four: ``add``, ``change``, ``delete`` and
``view`` (``blog.change_post`` for ``blog``'s ``Post``). Rows in ``auth_permission`` are
made when a permission is first granted, so there is nothing to synchronise after a
migration; granting a name that no model of the site gives is an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from sqlalchemy import Table, delete, insert, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite import AiositeError, AppRegistry, models_of

from .models import Group, Permission, User, group_permissions, user_groups, user_permissions

ACTIONS = ("add", "change", "delete", "view")


class UnknownPermission(AiositeError, ValueError):
    """A permission name that no model of the site gives."""


def registry_permissions(registry: AppRegistry) -> frozenset[str]:
    """Every permission of the models of the apps ``registry`` lists."""
    names: set[str] = set()
    for dotted in models_of(registry):
        app_name, _, model = dotted.partition(".")
        names.update(f"{app_name}.{action}_{model.lower()}" for action in ACTIONS)
    return frozenset(names)


def check_known(codenames: Iterable[str], known: Collection[str]) -> list[str]:
    """``codenames`` as a list; UnknownPermission for the first one not in ``known``."""
    names = list(codenames)
    for name in names:
        if name not in known:
            raise UnknownPermission(_unknown_message(name, known))
    return names


def _unknown_message(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown permission {name!r}{hint}; permissions are named app.action_model, with "
        f"action one of {', '.join(ACTIONS)} and a model of an app the site lists "
        "(`aiosite permissions` lists them)"
    )


async def get_permissions(session: AsyncSession, user: User) -> frozenset[str]:
    """The permissions granted to ``user`` directly and through its groups, loaded once
    and kept on the user so that ``user.has_perm(...)`` can answer. Superusers pass
    every check whatever this holds; inactive users have none."""
    if user._loaded_permissions is not None:
        return user._loaded_permissions
    if not user.is_active or user.id is None:
        user._loaded_permissions = frozenset()
        return user._loaded_permissions
    direct = (
        select(Permission.codename)
        .join(user_permissions, user_permissions.c.permission_id == Permission.id)
        .where(user_permissions.c.user_id == user.id)
    )
    through_groups = (
        select(Permission.codename)
        .join(group_permissions, group_permissions.c.permission_id == Permission.id)
        .join(user_groups, user_groups.c.group_id == group_permissions.c.group_id)
        .where(user_groups.c.user_id == user.id)
    )
    rows = await session.scalars(union(direct, through_groups))
    user._loaded_permissions = frozenset(rows)
    return user._loaded_permissions


def _link(target: User | Group) -> tuple[Table, str]:
    if isinstance(target, User):
        return user_permissions, "user_id"
    return group_permissions, "group_id"


async def _permission_ids(
    session: AsyncSession, names: list[str], *, create: bool
) -> dict[int, str]:
    """The ids of the permissions ``names`` (made when missing if ``create``), mapped to
    their names."""
    rows = await session.execute(
        select(Permission.codename, Permission.id).where(Permission.codename.in_(names))
    )
    existing: dict[str, int] = {name: pid for name, pid in rows}
    if create:
        for name in names:
            if name not in existing:
                permission = Permission(codename=name)
                session.add(permission)
                await session.flush()
                existing[name] = permission.id
    return {existing[name]: name for name in names if name in existing}


async def _granted(session: AsyncSession, target: User | Group, ids: Iterable[int]) -> set[int]:
    table, column = _link(target)
    rows = await session.scalars(
        select(table.c.permission_id).where(
            table.c[column] == target.id, table.c.permission_id.in_(list(ids))
        )
    )
    return set(rows)


async def grant(
    session: AsyncSession, target: User | Group, *perms: str, known: Collection[str]
) -> list[str]:
    """Give ``target`` (a user or a group) the permissions ``perms``; ``known`` is the
    site's permissions (``site_permissions(request)``). Returns those it did not have
    yet; UnknownPermission, before anything changes, for a name not in ``known``."""
    names = list(dict.fromkeys(check_known(perms, known)))
    await session.flush()  # a target added just now needs its id
    table, column = _link(target)
    ids = await _permission_ids(session, names, create=True)
    have = await _granted(session, target, ids)
    missing = [pid for pid in ids if pid not in have]
    if missing:
        await session.execute(
            insert(table), [{column: target.id, "permission_id": pid} for pid in missing]
        )
    _forget_loaded(target)
    return [ids[pid] for pid in missing]


async def revoke(session: AsyncSession, target: User | Group, *perms: str) -> list[str]:
    """Take the permissions ``perms`` from ``target``; returns those it had. (Permissions
    a user has through a group stay until the group loses them or the user leaves it.)"""
    table, column = _link(target)
    ids = await _permission_ids(session, list(dict.fromkeys(perms)), create=False)
    have = await _granted(session, target, ids) if ids else set()
    if have:
        await session.execute(
            delete(table).where(table.c[column] == target.id, table.c.permission_id.in_(have))
        )
    _forget_loaded(target)
    return [ids[pid] for pid in ids if pid in have]


def _forget_loaded(target: User | Group) -> None:
    # A user's loaded permissions are stale once they change; a group's members may be
    # loaded elsewhere in this session, and reload on their next request.
    if isinstance(target, User):
        target._loaded_permissions = None


async def get_or_create_group(session: AsyncSession, name: str) -> tuple[Group, bool]:
    """The group named ``name``, made when missing; and whether it was made."""
    group = await session.scalar(select(Group).where(Group.name == name))
    if group is not None:
        return group, False
    group = Group(name=name)
    session.add(group)
    await session.flush()
    return group, True


async def add_to_group(session: AsyncSession, user: User, group: Group) -> bool:
    """Put ``user`` in ``group``; False when it already was."""
    member = await session.scalar(
        select(user_groups.c.user_id).where(
            user_groups.c.user_id == user.id, user_groups.c.group_id == group.id
        )
    )
    if member is not None:
        return False
    await session.execute(insert(user_groups).values(user_id=user.id, group_id=group.id))
    user._loaded_permissions = None
    return True


async def remove_from_group(session: AsyncSession, user: User, group: Group) -> bool:
    """Take ``user`` out of ``group``; False when it was not in it."""
    result = await session.execute(
        delete(user_groups).where(
            user_groups.c.user_id == user.id, user_groups.c.group_id == group.id
        )
    )
    user._loaded_permissions = None
    return bool(getattr(result, "rowcount", 0))
