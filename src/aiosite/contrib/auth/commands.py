"""The auth app's commands: ``aiosite createsuperuser``, ``changepassword``, ``grant``,
``revoke``, ``permissions`` and ``group add/remove``.

They run against the database of the project's settings (``--env`` picks another
environment, as for every command). A mistake is a ``CommandError``: one line, exit 2.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite import CommandError, Database, Settings, command_settings, load_apps

from .config import AuthSettings
from .forms import email_problem, normalize_username, username_problem
from .models import Group, User
from .passwords import Passwords, password_problem
from .permissions import (
    UnknownPermission,
    add_to_group,
    get_or_create_group,
    get_permissions,
    grant,
    registry_permissions,
    remove_from_group,
    revoke,
)
from .users import username_taken

commands = typer.Typer(rich_markup_mode=None)
groups = typer.Typer(
    name="group", help="Put users in groups and take them out.", no_args_is_help=True
)
commands.add_typer(groups)

MIGRATE_HINT = (
    "the database has no auth tables yet; write their migration with "
    "`aiosite db makemigrations -m auth`, then apply it with `aiosite db migrate`"
)


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A transaction on the project's database, which must have the auth tables."""
    database = Database(settings)
    try:
        await database.check()
        async with database.engine.connect() as connection:
            ready = await connection.run_sync(lambda sync: inspect(sync).has_table("auth_user"))
        if not ready:
            raise CommandError(MIGRATE_HINT)
        async with database.transaction() as session:
            yield session
    finally:
        await database.dispose()


async def _user(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == normalize_username(username)))
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


async def _group(session: AsyncSession, name: str) -> Group:
    group = await session.scalar(select(Group).where(Group.name == name))
    if group is None:
        raise CommandError(f"no group named {name!r}")
    return group


# --- reading input ------------------------------------------------------------------


def _ask(
    label: str,
    given: str | None,
    option: str,
    problem: Callable[[str], str | None],
    *,
    interactive: bool,
    optional: bool = False,
) -> str:
    """A value from its option, or prompted for (again while it has a problem)."""
    if given is not None:
        value = normalize_username(given)
        found = problem(value)
        if found:
            raise CommandError(f"{option}: {found}")
        return value
    if not interactive:
        if optional:
            return ""
        raise CommandError(f"{option} is required with --no-input")
    while True:
        value = normalize_username(
            str(typer.prompt(label, default="" if optional else None, show_default=False))
        )
        found = problem(value)
        if not found:
            return value
        typer.echo(f"Error: {found}", err=True)


def _stdin_password() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise CommandError("--password-stdin: standard input holds no password (one line)")
    return password


def _password(settings: Settings, username: str, *, from_stdin: bool, interactive: bool) -> str:
    min_length = settings.section(AuthSettings).password_min_length
    if from_stdin:
        password = _stdin_password()
        problem = password_problem(password, username=username, min_length=min_length)
        if problem:
            raise CommandError(f"the password is too weak: {problem}")
        return password
    if not interactive:
        raise CommandError("--no-input needs the password on standard input: add --password-stdin")
    while True:
        password = str(typer.prompt("Password", hide_input=True))
        problem = password_problem(password, username=username, min_length=min_length)
        if problem:
            typer.echo(f"Error: {problem}", err=True)
            continue
        if str(typer.prompt("Password (again)", hide_input=True)) != password:
            typer.echo("Error: the two passwords differ; type them again.", err=True)
            continue
        return password


# --- commands -----------------------------------------------------------------------


@commands.command("createsuperuser")
def createsuperuser(
    ctx: typer.Context,
    username: Annotated[str | None, typer.Option(help="The new user's username.")] = None,
    email: Annotated[str | None, typer.Option(help="Their email address (optional).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    no_input: Annotated[
        bool, typer.Option("--no-input", help="Never prompt: fail when something is missing.")
    ] = False,
) -> None:
    """Create a user with every permission (is_superuser and is_staff)."""
    settings = command_settings(ctx)
    interactive = not no_input
    name = _ask("Username", username, "--username", username_problem, interactive=interactive)
    address = _ask(
        "Email address (optional)",
        email,
        "--email",
        email_problem,
        interactive=interactive,
        optional=True,
    )
    password = _password(settings, name, from_stdin=password_stdin, interactive=interactive)
    asyncio.run(_create_superuser(settings, name, address, password))
    typer.echo(f"Created the superuser {name!r}.")


async def _create_superuser(settings: Settings, username: str, email: str, password: str) -> None:
    async with _session(settings) as session:
        if await username_taken(session, username):
            raise CommandError(
                f"a user named {username!r} already exists (usernames are compared case "
                f"aside); set its password with `aiosite changepassword {username}`"
            )
        hashed = await Passwords(settings).hash(password)
        session.add(
            User(username=username, email=email, password=hashed, is_staff=True, is_superuser=True)
        )


@commands.command("changepassword")
def changepassword(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose password to change.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a user's password; their sessions on the site end."""
    settings = command_settings(ctx)
    asyncio.run(_check_user(settings, username))
    password = _password(settings, username, from_stdin=password_stdin, interactive=True)
    asyncio.run(_change_password(settings, username, password))
    typer.echo(f"Changed the password of {username!r}.")


async def _check_user(settings: Settings, username: str) -> None:
    async with _session(settings) as session:
        await _user(session, username)


async def _change_password(settings: Settings, username: str, password: str) -> None:
    async with _session(settings) as session:
        user = await _user(session, username)
        user.password = await Passwords(settings).hash(password)


UserOption = Annotated[str | None, typer.Option("--user", "-u", help="A username.")]
GroupOption = Annotated[
    str | None, typer.Option("--group", "-g", help="A group name (grant creates it).")
]
PermissionsArgument = Annotated[
    list[str], typer.Argument(help="Permissions such as blog.change_post.", show_default=False)
]


def _one_target(user: str | None, group: str | None) -> None:
    if (user is None) == (group is None):
        raise CommandError("name either --user USERNAME or --group NAME (one of the two)")


@commands.command("grant")
def grant_command(
    ctx: typer.Context,
    perms: PermissionsArgument,
    user: UserOption = None,
    group: GroupOption = None,
) -> None:
    """Give a user or a group permissions: aiosite grant --user ada blog.change_post."""
    _one_target(user, group)
    settings = command_settings(ctx)
    known = registry_permissions(load_apps(settings))
    for line in asyncio.run(_grant(settings, perms, known, user, group)):
        typer.echo(line)


async def _grant(
    settings: Settings,
    perms: list[str],
    known: frozenset[str],
    username: str | None,
    group_name: str | None,
) -> list[str]:
    lines = []
    async with _session(settings) as session:
        target: User | Group
        if username is not None:
            target = await _user(session, username)
            shown = f"user {username!r}"
        else:
            target, created = await get_or_create_group(session, str(group_name))
            shown = f"group {group_name!r}"
            if created:
                lines.append(f"Created the {shown}.")
        try:
            added = await grant(session, target, *perms, known=known)
        except UnknownPermission as exc:
            raise CommandError(str(exc)) from None
        for name in perms:
            state = "granted to" if name in added else "already held by"
            lines.append(f"{name}: {state} {shown}")
    return lines


@commands.command("revoke")
def revoke_command(
    ctx: typer.Context,
    perms: PermissionsArgument,
    user: UserOption = None,
    group: GroupOption = None,
) -> None:
    """Take permissions from a user or a group."""
    _one_target(user, group)
    settings = command_settings(ctx)
    for line in asyncio.run(_revoke(settings, perms, user, group)):
        typer.echo(line)


async def _revoke(
    settings: Settings, perms: list[str], username: str | None, group_name: str | None
) -> list[str]:
    async with _session(settings) as session:
        target: User | Group
        if username is not None:
            target = await _user(session, username)
            shown = f"user {username!r}"
        else:
            target, shown = await _group(session, str(group_name)), f"group {group_name!r}"
        removed = await revoke(session, target, *perms)
    return [
        f"{name}: {'revoked from' if name in removed else 'was not held by'} {shown}"
        for name in perms
    ]


@commands.command("permissions")
def permissions_command(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="List this user's permissions instead.")
    ] = None,
) -> None:
    """List the site's permissions, or those a user has."""
    settings = command_settings(ctx)
    if user is None:
        for name in sorted(registry_permissions(load_apps(settings))):
            typer.echo(name)
        return
    for line in asyncio.run(_user_permissions(settings, user)):
        typer.echo(line)


async def _user_permissions(settings: Settings, username: str) -> list[str]:
    async with _session(settings) as session:
        user = await _user(session, username)
        if not user.is_active:
            return [f"{username!r} is inactive: no permissions"]
        if user.is_superuser:
            return [f"{username!r} is a superuser: every permission"]
        return sorted(await get_permissions(session, user))


@groups.command("add")
def group_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The user.")],
    group: Annotated[str, typer.Argument(help="The group; created when missing.")],
) -> None:
    """Put a user in a group: aiosite group add ada editors."""
    typer.echo(asyncio.run(_group_add(command_settings(ctx), username, group)))


async def _group_add(settings: Settings, username: str, group_name: str) -> str:
    async with _session(settings) as session:
        user = await _user(session, username)
        group, created = await get_or_create_group(session, group_name)
        added = await add_to_group(session, user, group)
    made = f"Created the group {group_name!r}. " if created else ""
    done = "is now in" if added else "was already in"
    return f"{made}{username!r} {done} {group_name!r}."


@groups.command("remove")
def group_remove(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The user.")],
    group: Annotated[str, typer.Argument(help="The group.")],
) -> None:
    """Take a user out of a group."""
    typer.echo(asyncio.run(_group_remove(command_settings(ctx), username, group)))


async def _group_remove(settings: Settings, username: str, group_name: str) -> str:
    async with _session(settings) as session:
        user = await _user(session, username)
        group = await _group(session, group_name)
        removed = await remove_from_group(session, user, group)
    return f"{username!r} {'is no longer in' if removed else 'was not in'} {group_name!r}."
