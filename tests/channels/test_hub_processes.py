"""Two separate site processes (``aiosite run``) on one Redis, then on one PostgreSQL: a
message published in one reaches the websocket clients of both."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.channels.support import REDIS_DB, chat_project
from tests.conftest import REDIS_ADDRESS, ProjectFactory, require_service
from tests.e2e.test_run import BIN, Server, clean_env, free_port


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[Path, dict[str, str]], Server]]:
    servers: list[Server] = []

    def starter(project: Path, env: dict[str, str]) -> Server:
        port = free_port()
        n = len(servers)
        out, err = tmp_path / f"out{n}.log", tmp_path / f"err{n}.log"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(BIN / "aiosite"), "run", "--port", str(port)],
                cwd=project,
                stdout=stdout,
                stderr=stderr,
                env=clean_env(AIOSITE_ENV="development", **env),
                start_new_session=True,
            )
        server = Server(proc, port, out, err)
        servers.append(server)
        return server

    yield starter
    for server in servers:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGTERM)
            try:
                server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.proc.pid, signal.SIGKILL)
                server.proc.wait(timeout=10)


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:12]}"


async def _two_processes_exchange(
    project: Path, env: dict[str, str], start: Callable[[Path, dict[str, str]], Server], room: str
) -> None:
    first, second = start(project, env), start(project, env)
    first.wait_ready()
    second.wait_ready()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        ws1 = await session.ws_connect(f"http://127.0.0.1:{first.port}/live/chat/{room}")
        ws2 = await session.ws_connect(f"http://127.0.0.1:{second.port}/live/chat/{room}")
        for ws in (ws1, ws2):
            assert await ws.receive_json(timeout=10) == {"ready": True}
        # Published over HTTP in the first process: both processes' clients get it.
        async with session.post(
            f"http://127.0.0.1:{first.port}/live/publish/{room}", json={"text": "from one"}
        ) as response:
            assert response.status == 200, await response.text()
            message_id = (await response.json())["id"]
        for ws in (ws1, ws2):
            assert await ws.receive_json(timeout=10) == {
                "data": {"text": "from one"},
                "id": message_id,
            }
        # Sent by the second process's websocket client: the first one's gets it.
        await ws2.send_json({"text": "from two"})
        for ws in (ws1, ws2):
            assert (await ws.receive_json(timeout=10))["data"] == {"text": "from two"}
        await ws1.close()
        await ws2.close()
    assert "Traceback" not in first.stderr() + second.stderr()


@pytest.mark.e2e
async def test_two_site_processes_on_one_redis_share_their_messages(
    make_project: ProjectFactory, start: Callable[[Path, dict[str, str]], Server], room: str
) -> None:
    require_service("Redis", *REDIS_ADDRESS)
    host, port = REDIS_ADDRESS
    env = {
        "AIOSITE_CHANNELS__BACKEND": "redis",
        "AIOSITE_CHANNELS__URL": f"redis://{host}:{port}/{REDIS_DB}",
    }
    try:
        await _two_processes_exchange(chat_project(make_project), env, start, room)
    finally:
        client = aioredis.Redis(host=host, port=port, db=REDIS_DB)
        try:
            await client.delete(f"aiosite:channels:{room}")  # the room's stream
        finally:
            await client.aclose()


@pytest.mark.e2e
async def test_two_site_processes_on_one_postgresql_share_their_messages(
    make_project: ProjectFactory,
    start: Callable[[Path, dict[str, str]], Server],
    room: str,
    pg_url: str,
) -> None:
    env = {"AIOSITE_CHANNELS__BACKEND": "postgres", "AIOSITE_CHANNELS__URL": pg_url}
    await _two_processes_exchange(chat_project(make_project), env, start, room)
