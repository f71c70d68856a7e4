"""``Passwords`` as docs/auth.md shows it: imported from aiosite.contrib.auth, made from
the project's settings outside a site, awaited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from aiosite import load_settings, session_scope
from tests.conftest import ProjectFactory, site_with_tables
from tests.contrib.auth.conftest import auth, make_auth_project


async def test_passwords_outside_a_site_hash_and_verify(make_project: ProjectFactory) -> None:
    root = make_auth_project(make_project)
    passwords = auth().Passwords(load_settings(root, "test"))
    stored = await passwords.hash("a good password")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "a good password") is True
    assert await passwords.verify(stored, "another password") is False


async def test_a_hash_that_was_not_awaited_fails_when_the_row_is_written(
    make_project: ProjectFactory,
) -> None:
    module = auth()
    async with site_with_tables(make_auth_project(make_project)) as client:
        passwords = module.passwords_of(client.app)
        async with session_scope(client.app) as session:
            session.add(module.User(username="ada", password=await passwords.hash("pw 12345")))
        async with session_scope(client.app) as session:
            ada = await session.scalar(select(module.User).where(module.User.username == "ada"))
            assert await passwords.verify(ada.password, "pw 12345")
        # The mistake docs/auth.md describes: the coroutine itself reaches the driver.
        forgotten = passwords.hash("pw 12345")
        with pytest.raises(Exception, match="type 'coroutine' is not supported") as caught:
            async with session_scope(client.app) as session:
                session.add(module.User(username="bob", password=forgotten))
        forgotten.close()  # Python would warn that it was never awaited
        assert "sqlite3.ProgrammingError" in str(caught.value)


async def test_unknown_users_are_checked_against_a_hash_made_without_hashing(
    make_project: ProjectFactory,
) -> None:
    # The hash a login for an unknown username is verified against has the hasher's
    # parameters (so the check costs what a real one does) and matches nothing; making
    # it runs no argon2, so a site with auth does no hashing when it starts.
    import argon2

    from aiosite.contrib.auth.passwords import unmatchable_hash

    passwords = auth().Passwords(load_settings(make_auth_project(make_project), "test"))
    real = await passwords.hash("a good password")
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    dummy = unmatchable_hash(hasher)
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(hasher.hash("x"))
    assert argon2.extract_parameters(passwords._dummy) == argon2.extract_parameters(real)
    assert dummy != unmatchable_hash(hasher)
    for password in ("", "a good password", "x"):
        assert await passwords.verify(dummy, password) is False
        assert await passwords.verify(passwords._dummy, password) is False
    await passwords.dummy_verify("a good password")
