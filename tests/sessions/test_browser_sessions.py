"""Browser sessions over HTTP: the encrypted cookie, Redis, rotation and flash messages."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from aiosite import SETTINGS
from aiosite.exceptions import ImproperlyConfigured
from aiosite.sessions.storage import derive_key
from tests.conftest import REDIS_ADDRESS, require_service, site_client
from tests.sessions.support import session_project


def _project(make_project: Callable[..., Path], session_yaml: str = "", env_yaml: str = "") -> Path:
    return session_project(make_project, session_yaml + env_yaml)


def _session_cookie(response: object) -> str | None:
    cookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        cookie.load(header)
    morsel = cookie.get("aiosite_session")
    return None if morsel is None else morsel.value


async def test_the_session_lives_in_an_encrypted_cookie(make_project: Callable[..., Path]) -> None:
    async with site_client(_project(make_project)) as client:
        assert await (await client.get("/count")).text() == "1"
        response = await client.get("/count")
        assert await response.text() == "2"
        value = _session_cookie(response)
        assert value is not None
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        assert b'"n"' not in raw
        assert b"session" not in raw
        assert await (await client.get("/peek")).text() == "2"


async def test_the_cookie_is_httponly_lax_and_secure_only_in_production(
    make_project: Callable[..., Path],
) -> None:
    root = _project(make_project)
    async with site_client(root) as client:
        header = (await client.get("/count")).headers["Set-Cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert "Secure" not in header
    assert "Max-Age=1209600" in header
    async with site_client(root, "production") as client:
        header = (await client.get("/count")).headers["Set-Cookie"]
    assert "Secure" in header
    assert "HttpOnly" in header


async def test_a_route_that_does_not_touch_the_session_sets_no_cookie(
    make_project: Callable[..., Path],
) -> None:
    async with site_client(_project(make_project)) as client:
        response = await client.get("/plain")
        assert response.status == 200
        assert "Set-Cookie" not in response.headers
        await client.get("/count")
        # Reading a session without changing it does not send it again.
        response = await client.get("/peek")
        assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    "tamper",
    [
        lambda value: value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"),
        lambda value: "x" + value,
        lambda value: "not-a-fernet-token",
        lambda value: "%%%\u00e9",
    ],
    ids=["flipped", "prefixed", "garbage", "non-ascii"],
)
async def test_a_tampered_cookie_is_an_empty_session_never_a_500(
    make_project: Callable[..., Path], tamper: Callable[[str], str]
) -> None:
    async with site_client(_project(make_project)) as client:
        await client.get("/count")
        value = _session_cookie(await client.get("/count"))
        assert value is not None
        client.session.cookie_jar.clear()
        response = await client.get("/count", cookies={"aiosite_session": tamper(value)})
        assert response.status == 200
        assert await response.text() == "1"


async def test_an_expired_cookie_is_an_empty_session(make_project: Callable[..., Path]) -> None:
    async with site_client(_project(make_project)) as client:
        # A cookie the site itself would have made 15 days ago (max_age is 14 days).
        secret = client.app[SETTINGS].security.secret_values()[0]
        fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret, "aiosite.session.cookie")))
        then = int(time.time()) - 15 * 24 * 3600
        data = json.dumps({"created": then, "session": {"n": 41}}).encode()
        old = fernet.encrypt_at_time(data, then).decode()
        # The browser would have dropped it; a client that keeps it gets nothing from it.
        response = await client.get("/count", cookies={"aiosite_session": old})
        assert await response.text() == "1"


async def test_a_cookie_made_with_an_earlier_key_is_read_with_the_fallback(
    make_project: Callable[..., Path],
) -> None:
    old, new = "o" * 8 + uuid.uuid4().hex * 2, "n" * 8 + uuid.uuid4().hex * 2
    root = _project(make_project)
    (root / "config" / "test.yaml").write_text(f"security:\n  secret_key: {old}\n")
    async with site_client(root) as client:
        await client.get("/count")
        value = _session_cookie(await client.get("/count"))
    (root / "config" / "test.yaml").write_text(f"security:\n  secret_key: {new}\n")
    async with site_client(root) as client:
        response = await client.get("/count", cookies={"aiosite_session": value or ""})
        assert await response.text() == "1"  # the new key alone cannot read it
    (root / "config" / "test.yaml").write_text(
        f"security:\n  secret_key: {new}\n  secret_key_fallbacks: [{old}]\n"
    )
    async with site_client(root) as client:
        response = await client.get("/count", cookies={"aiosite_session": value or ""})
        assert await response.text() == "3"


async def test_rotation_changes_the_cookie_and_keeps_the_data(
    make_project: Callable[..., Path],
) -> None:
    async with site_client(_project(make_project)) as client:
        await client.get("/count")
        before = _session_cookie(await client.get("/count"))
        response = await client.get("/rotate")
        assert await response.text() == "2"
        after = _session_cookie(response)
        assert after is not None
        assert after != before
        assert await (await client.get("/peek")).text() == "2"


async def test_an_invalidated_session_deletes_the_cookie(make_project: Callable[..., Path]) -> None:
    async with site_client(_project(make_project)) as client:
        await client.get("/count")
        response = await client.get("/forget")
        assert _session_cookie(response) == ""
        assert await (await client.get("/peek")).text() == "0"


async def test_flash_messages_show_once_and_escaped(make_project: Callable[..., Path]) -> None:
    async with site_client(_project(make_project)) as client:
        page = await (await client.get("/flash")).text()  # follows the redirect
        assert '<li class="success">Saved &lt;b&gt;it&lt;/b&gt;.</li>' in page
        assert "<li" not in await (await client.get("/show")).text()


async def test_a_page_with_flashes_loads_no_session_for_a_new_visitor(
    make_project: Callable[..., Path],
) -> None:
    async with site_client(_project(make_project)) as client:
        response = await client.get("/show")
        assert response.status == 200
        assert "Set-Cookie" not in response.headers


def test_production_refuses_to_start_without_a_secret_key(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    (root / "config" / "production.yaml").write_text("{}\n")
    with pytest.raises(ImproperlyConfigured, match=r"security\.secret_key: missing"):
        site_client(root, "production")
    (root / "config" / "production.yaml").write_text(
        "security:\n  secret_key: aiosite-insecure-" + "x1y2z3" * 8 + "\n"
    )
    with pytest.raises(ImproperlyConfigured, match="a development key"):
        site_client(root, "production")
    # Whatever the sessions are stored in, and a development key among the fallbacks too.
    (root / "config" / "production.yaml").write_text("session:\n  backend: redis\n")
    with pytest.raises(ImproperlyConfigured, match=r"security\.secret_key: missing"):
        site_client(root, "production")
    (root / "config" / "production.yaml").write_text(
        f"security:\n  secret_key: {uuid.uuid4().hex * 2}\n"
        "  secret_key_fallbacks: [aiosite-insecure-old-key]\n"
    )
    with pytest.raises(ImproperlyConfigured, match=r"secret_key_fallbacks: item 0"):
        site_client(root, "production")


# --- Redis ---------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> str:
    require_service("Redis", *REDIS_ADDRESS)
    return f"aiosite-test:{uuid.uuid4().hex[:12]}:"


def _redis_project(make_project: Callable[..., Path], prefix: str, extra: str = "") -> Path:
    host, port = REDIS_ADDRESS
    yaml = (
        f"session:\n  backend: redis\n  redis_url: redis://{host}:{port}/0\n"
        f"  redis_prefix: '{prefix}'\n{extra}"
    )
    return _project(make_project, yaml)


async def _redis_keys(prefix: str) -> dict[str, int]:
    client = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1])
    try:
        keys = [key.decode() async for key in client.scan_iter(match=prefix + "*")]
        return {key: await client.ttl(key) for key in keys}
    finally:
        await client.aclose()


async def _cleanup(prefix: str) -> None:
    client = aioredis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1])
    try:
        async for key in client.scan_iter(match=prefix + "*"):
            await client.delete(key)
    finally:
        await client.aclose()


async def test_redis_sessions_are_shared_by_two_site_instances(
    make_project: Callable[..., Path], redis_prefix: str
) -> None:
    root = _redis_project(make_project, redis_prefix)
    try:
        async with site_client(root) as first, site_client(root) as second:
            assert first.server.port != second.server.port
            await first.get("/count")
            response = await first.get("/count")
            key = _session_cookie(response)
            assert key is not None
            assert len(key) >= 40
            # The second process-like instance reads and changes the same session.
            response = await second.get("/count", cookies={"aiosite_session": key})
            assert await response.text() == "3"
            response = await first.get("/peek")
            assert await response.text() == "3"
            stored = await _redis_keys(redis_prefix)
            assert list(stored) == [redis_prefix + key]
            assert 0 < stored[redis_prefix + key] <= 1209600
    finally:
        await _cleanup(redis_prefix)


async def test_redis_rotation_and_logout_delete_the_old_key(
    make_project: Callable[..., Path], redis_prefix: str
) -> None:
    root = _redis_project(make_project, redis_prefix)
    try:
        async with site_client(root) as client:
            old = _session_cookie(await client.get("/count"))
            new = _session_cookie(await client.get("/rotate"))
            assert old
            assert new
            assert old != new
            assert list(await _redis_keys(redis_prefix)) == [redis_prefix + new]
            await client.get("/forget")
            assert await _redis_keys(redis_prefix) == {}
            # An unknown key is an empty session.
            response = await client.get("/count", cookies={"aiosite_session": "x" * 43})
            assert await response.text() == "1"
    finally:
        await _cleanup(redis_prefix)


async def test_redis_down_is_a_503_not_a_500(
    make_project: Callable[..., Path], unused_tcp_port: int
) -> None:
    root = _project(
        make_project,
        f"session:\n  backend: redis\n  redis_url: redis://127.0.0.1:{unused_tcp_port}/0\n",
    )
    async with site_client(root) as client:
        response = await client.get("/count", cookies={"aiosite_session": "y" * 43})
        assert response.status == 503
        assert "Sessions are unavailable" in await response.text()
        assert (await client.get("/plain")).status == 200
