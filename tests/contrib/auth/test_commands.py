"""The auth app's commands, run as ``aiosite ...`` against the project's database, then
checked over HTTP."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest

from tests.cli_runner import Result, aiosite_process, invoke, one_line_error
from tests.conftest import ProjectFactory, site_with_tables

from .conftest import PASSWORD, BrowserFactory, make_auth_project, make_user, stored_user

NEW_PASSWORD = "another good password"  # noqa: S105


class Cli:
    """``aiosite --project ROOT --env test ARGS`` in this process, with ``stdin``.

    Run in a thread: the commands start an event loop of their own, and the test's own
    loop is serving the site at the same time.
    """

    def __init__(
        self, root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.root = root
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    async def __call__(self, *args: str, stdin: str = "") -> Result:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        argv = ["--project", str(self.root), "--env", "test", *args]
        return await asyncio.to_thread(invoke, self.capsys, argv)


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_auth_project(make_project)


@pytest.fixture
def cli(project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(project, capsys, monkeypatch)


SUPERUSER = ("createsuperuser", "--username", "root", "--email", "root@example.com")


async def test_createsuperuser_then_log_in_over_http(
    project: Path, cli: Cli, browsers: BrowserFactory
) -> None:
    async with site_with_tables(project) as site:
        result = await cli(*SUPERUSER, "--password-stdin", "--no-input", stdin=PASSWORD + "\n")
        assert result.code == 0, result
        assert result.out.strip() == "Created the superuser 'root'."
        user = await stored_user(site.app, "root")
        assert (user.email, user.is_superuser, user.is_staff, user.is_active) == (
            "root@example.com",
            True,
            True,
            True,
        )
        browser = browsers(site)
        assert (await browser.login("root")).status == 303
        assert (await browser.get("/blog/edit")).status == 200  # a superuser

        again = await cli(*SUPERUSER, "--password-stdin", "--no-input", stdin=PASSWORD + "\n")
        one_line_error(again, "a user named 'root' already exists", "aiosite changepassword root")
        upper = ("createsuperuser", "--username", "ROOT", "--password-stdin", "--no-input")
        one_line_error(await cli(*upper, stdin=PASSWORD + "\n"), "named 'ROOT' already exists")


CREATESUPERUSER_MISTAKES = [
    (("createsuperuser", "--no-input", "--password-stdin"), PASSWORD, ["--username is required"]),
    (("createsuperuser", "--username", "root", "--no-input"), "", ["add --password-stdin"]),
    ((*SUPERUSER, "--password-stdin"), "", ["standard input holds no password"]),
    ((*SUPERUSER, "--password-stdin"), "short\n", ["too weak", "at least 8 characters"]),
    ((*SUPERUSER, "--password-stdin"), "12345678901\n", ["too weak", "more than digits"]),
    (("createsuperuser", "--username", "a b", "--no-input"), "", ["--username: Use only"]),
    ((*SUPERUSER[:3], "--email", "nope", "--no-input"), "", ["--email: Enter an email"]),
]


async def test_createsuperuser_mistakes_are_one_line(project: Path, cli: Cli) -> None:
    async with site_with_tables(project) as site:
        for args, stdin, fragments in CREATESUPERUSER_MISTAKES:
            one_line_error(await cli(*args, stdin=stdin), *fragments)
        assert await stored_user(site.app, "root") is None


async def test_commands_need_the_auth_tables(cli: Cli) -> None:
    result = await cli(*SUPERUSER, "--password-stdin", stdin=PASSWORD)
    one_line_error(result, "no auth tables yet", "aiosite db makemigrations -m auth", "db migrate")


async def test_changepassword_from_stdin(project: Path, cli: Cli, browsers: BrowserFactory) -> None:
    async with site_with_tables(project) as site:
        await make_user(site.app, "ada")
        logged_in = browsers(site)
        await logged_in.login("ada")

        result = await cli("changepassword", "ada", "--password-stdin", stdin=NEW_PASSWORD)
        assert result.code == 0, result
        assert result.out.strip() == "Changed the password of 'ada'."
        assert (await browsers(site).login("ada", PASSWORD)).status == 400
        assert (await browsers(site).login("ada", NEW_PASSWORD)).status == 303
        assert "authenticated=False" in await logged_in.whoami()  # its sessions ended

        one_line_error(
            await cli("changepassword", "ghost", "--password-stdin", stdin=NEW_PASSWORD),
            "no user named 'ghost'",
        )
        one_line_error(
            await cli("changepassword", "ada", "--password-stdin", stdin="ada\n"),
            "too weak",
        )


async def test_grant_and_revoke_for_users_and_groups(
    project: Path, cli: Cli, browsers: BrowserFactory
) -> None:
    async with site_with_tables(project) as site:
        await make_user(site.app, "ada")
        await make_user(site.app, "bob")
        ada, bob = browsers(site), browsers(site)
        await ada.login("ada")
        await bob.login("bob")
        assert (await ada.get("/blog/edit")).status == 403

        result = await cli("grant", "--user", "ada", "blog.change_post", "blog.view_post")
        assert result.code == 0, result
        assert result.out.splitlines() == [
            "blog.change_post: granted to user 'ada'",
            "blog.view_post: granted to user 'ada'",
        ]
        assert (await ada.get("/blog/edit")).status == 200
        result = await cli("permissions", "--user", "ada")
        assert result.out.splitlines() == ["blog.change_post", "blog.view_post"]

        result = await cli("revoke", "--user", "ada", "blog.change_post")
        assert result.out.strip() == "blog.change_post: revoked from user 'ada'"
        assert (await ada.get("/blog/edit")).status == 403

        result = await cli("grant", "--group", "editors", "blog.change_post")
        assert result.out.splitlines() == [
            "Created the group 'editors'.",
            "blog.change_post: granted to group 'editors'",
        ]
        result = await cli("group", "add", "bob", "editors")
        assert result.out.strip() == "'bob' is now in 'editors'."
        assert (await bob.get("/blog/edit")).status == 200
        result = await cli("group", "remove", "bob", "editors")
        assert result.out.strip() == "'bob' is no longer in 'editors'."
        assert (await bob.get("/blog/edit")).status == 403

        one_line_error(
            await cli("grant", "--user", "ada", "blog.chnage_post"),
            "unknown permission 'blog.chnage_post'",
            "did you mean 'blog.change_post'",
        )
        one_line_error(await cli("grant", "blog.view_post"), "--user USERNAME or --group NAME")
        one_line_error(await cli("grant", "--user", "ghost", "blog.view_post"), "no user named")
        one_line_error(await cli("revoke", "--group", "ghosts", "blog.view_post"), "no group")


async def test_permissions_lists_the_sites_permissions(project: Path, cli: Cli) -> None:
    async with site_with_tables(project) as site:
        result = await cli("permissions")
        assert result.code == 0
        names = result.out.splitlines()
        assert names == sorted(names)
        assert {"blog.add_post", "blog.view_post", "auth.change_user", "auth.view_group"} <= set(
            names
        )
        await make_user(site.app, "root", is_superuser=True)
        result = await cli("permissions", "--user", "root")
        assert result.out.strip() == "'root' is a superuser: every permission"


@pytest.mark.e2e
async def test_createsuperuser_prompts(project: Path, browsers: BrowserFactory) -> None:
    async with site_with_tables(project) as site:
        # A mistake at each prompt is said and asked again: a bad username, a weak
        # password, and two passwords that differ.
        answers = ["bad name", "root", "", "short", PASSWORD, "typo", PASSWORD, PASSWORD]
        done = await asyncio.to_thread(
            aiosite_process, project, "createsuperuser", input="\n".join(answers) + "\n"
        )
        assert done.returncode == 0, done.stderr
        assert "Created the superuser 'root'." in done.stdout
        assert "Error: Use only letters" in done.stderr
        assert "Error: Use at least 8 characters." in done.stderr
        assert "Error: the two passwords differ" in done.stderr
        assert (await browsers(site).login("root")).status == 303


def test_migrations_make_the_auth_tables(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What docs/auth.md says to do after adding the app to apps:."""
    base = ["--project", str(project), "--env", "test"]
    for args in (["db", "init"], ["db", "makemigrations", "-m", "auth"], ["db", "migrate"]):
        result = invoke(capsys, [*base, *args])
        assert result.code == 0, result
    migration = next((project / "migrations" / "versions").glob("*_auth.py")).read_text()
    for table in ("auth_user", "auth_group", "auth_permission", "auth_login_failure"):
        assert f"op.create_table('{table}'" in migration
    sys_stdin = io.StringIO(PASSWORD + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", sys_stdin)
        result = invoke(capsys, [*base, *SUPERUSER, "--password-stdin", "--no-input"])
    assert result.code == 0, result
    assert invoke(capsys, [*base, "db", "check"]).code == 0
