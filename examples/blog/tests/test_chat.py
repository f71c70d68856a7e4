"""The chat: rooms, a room's page, and its websocket (history, posting, who may post)."""

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from blogsite.chat.models import ChatMessage
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from support import AddUser, Client, LogIn

from aiosite.contrib.auth import User

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
# Seconds a frame may take to arrive.
WAIT = 5


@pytest.fixture
async def grace(add_user: AddUser) -> User:
    return await add_user("grace")


async def add_messages(
    db: AsyncSession, room: str, count: int, author: User | None, *, first: int = 1
) -> list[ChatMessage]:
    """Messages "message <first>" to "message <first + count - 1>", a minute apart."""
    rows = [
        ChatMessage(
            room=room,
            author_id=author.id if author is not None else None,
            text=f"message {n}",
            created=START + timedelta(minutes=n),
        )
        for n in range(first, first + count)
    ]
    db.add_all(rows)
    await db.commit()
    return rows


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    frame: dict[str, Any] = await ws.receive_json(timeout=WAIT)
    return frame


async def stored(db: AsyncSession, room: str) -> list[tuple[str, int | None]]:
    rows = await db.execute(
        select(ChatMessage.text, ChatMessage.author_id)
        .where(ChatMessage.room == room)
        .order_by(ChatMessage.id)
    )
    return [(text, author_id) for text, author_id in rows]


@pytest.fixture
async def visitor(client: Client) -> AsyncIterator[aiohttp.ClientSession]:
    """A second browser, with cookies of its own: nobody is logged in there."""
    async with aiohttp.ClientSession(base_url=client.make_url("/")) as session:
        yield session


def texts(messages: Sequence[dict[str, Any]]) -> list[str]:
    return [message["text"] for message in messages]


async def test_rooms_page_opens_a_room_by_name(db: AsyncSession, client: Client) -> None:
    resp = await client.get("/chat/")
    assert resp.status == 200
    html = await resp.text()
    assert '<form class="form room-form" method="get" action="/chat/"' in html
    # Nobody has written anywhere yet: some rooms to start in.
    assert '<a href="/chat/general">#general</a>' in html
    assert '<a href="/chat/" aria-current="page">Chat</a>' in html

    resp = await client.get("/chat/", params={"room": "  Async IO "}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/chat/async-io")

    resp = await client.get("/chat/", params={"room": "no_such/room!"})
    assert resp.status == 400
    html = await resp.text()
    assert "lowercase letters, digits and hyphens" in html
    assert 'value="no_such/room!"' in html
    assert 'aria-invalid="true"' in html


async def test_rooms_page_lists_the_rooms_written_in_last(
    db: AsyncSession, client: Client, grace: User
) -> None:
    await add_messages(db, "older", 2, grace)
    await add_messages(db, "newer", 1, grace, first=3)
    html = await (await client.get("/chat/")).text()
    older = html.index('<a href="/chat/older">#older</a> <span class="room-count">2 messages')
    newer = html.index('<a href="/chat/newer">#newer</a> <span class="room-count">1 message<')
    assert newer < older
    assert "#general" not in html


@pytest.mark.parametrize(
    "path", ["/chat/General", "/chat/no_underscores", "/chat/" + "a" * 41, "/chat/Bad/ws"]
)
async def test_a_name_that_cannot_be_a_room_is_a_404(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404


async def test_websocket_of_a_bad_room_is_a_404(client: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/chat/Not_A_Room/ws")
    assert refused.value.status == 404


async def test_room_page_shows_the_last_50_messages_and_the_form_to_logged_in_users(
    db: AsyncSession, client: Client, grace: User, log_in: LogIn
) -> None:
    await add_messages(db, "general", 55, grace)
    await add_messages(db, "elsewhere", 1, grace, first=100)
    resp = await client.get("/chat/general")
    assert resp.status == 200
    html = await resp.text()
    assert "<title>#general · Chat · The aiosite Blog</title>" in html
    assert 'data-socket="/chat/general/ws"' in html
    assert html.count('<li class="chat-message"') == 50
    assert "message 5<" not in html
    assert html.index("message 6<") < html.index("message 55<")
    assert "message 100" not in html
    # The script comes from the site's own files: no inline script.
    assert '<script src="/static/chat/chat.js" defer></script>' in html
    assert "<script>" not in html
    # Anybody reads; only a logged-in user gets the form.
    assert 'class="chat-form"' not in html
    assert '<a href="/auth/login?next=/chat/general">Log in</a> to write' in html

    await log_in("grace")
    html = await (await client.get("/chat/general")).text()
    assert '<form class="chat-form"' in html
    assert 'placeholder="Write as grace…"' in html


async def test_socket_sends_the_last_50_messages_on_connect(
    db: AsyncSession, client: Client, grace: User
) -> None:
    await add_messages(db, "general", 55, grace)
    await add_messages(db, "elsewhere", 2, None, first=100)
    async with client.ws_connect("/chat/general/ws") as ws:
        history = await receive(ws)
    assert history["type"] == "history"
    assert history["room"] == "general"
    messages = history["messages"]
    assert texts(messages) == [f"message {n}" for n in range(6, 56)]
    assert messages[0]["author"] == "grace"
    assert messages[0]["created"] == "2025-03-01T09:06:00+00:00"
    assert [m["id"] for m in messages] == sorted(m["id"] for m in messages)

    async with client.ws_connect("/chat/elsewhere/ws") as ws:
        history = await receive(ws)
    # An account deleted since: its messages stay, by nobody.
    assert [(m["text"], m["author"]) for m in history["messages"]] == [
        ("message 100", None),
        ("message 101", None),
    ]


async def test_a_logged_in_user_posts_and_everybody_in_the_room_gets_it(
    db: AsyncSession,
    client: Client,
    grace: User,
    log_in: LogIn,
    visitor: aiohttp.ClientSession,
) -> None:
    await log_in("grace")
    async with (
        client.ws_connect("/chat/general/ws") as mine,
        visitor.ws_connect("/chat/general/ws") as theirs,
        visitor.ws_connect("/chat/other/ws") as other_room,
    ):
        for ws in (mine, theirs, other_room):
            assert (await receive(ws))["messages"] == []
        await mine.send_json({"text": "  Hello, room!  "})
        # The sender's own socket gets it back from the hub, as everybody else does.
        hello = [await receive(ws) for ws in (mine, theirs)]
        assert hello[0] == hello[1]
        assert hello[0]["type"] == "message"
        assert (hello[0]["author"], hello[0]["text"]) == ("grace", "Hello, room!")
        created = datetime.fromisoformat(hello[0]["created"])
        assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
        await mine.send_json({"text": "Second"})
        second = await receive(theirs)
        assert second["text"] == "Second"
        # The other room got neither: the next frame there answers its own (anonymous)
        # message.
        await other_room.send_json({"text": "anybody?"})
        assert (await receive(other_room))["type"] == "error"

    assert await stored(db, "general") == [("Hello, room!", grace.id), ("Second", grace.id)]
    assert await stored(db, "other") == []
    # Stored: whoever connects later (or reconnects) gets them in the history.
    async with visitor.ws_connect("/chat/general/ws") as ws:
        history = await receive(ws)
    assert history["messages"] == [hello[0], second]


async def test_anonymous_visitors_read_but_cannot_post(
    db: AsyncSession, client: Client, grace: User, log_in: LogIn
) -> None:
    await add_messages(db, "general", 1, grace)
    async with client.ws_connect("/chat/general/ws") as ws:
        assert texts((await receive(ws))["messages"]) == ["message 1"]
        await ws.send_json({"text": "let me in"})
        assert await receive(ws) == {"type": "error", "error": "Log in to write in this room."}
        # Still open: an anonymous reader keeps reading.
        await ws.send_json({"text": "again"})
        assert (await receive(ws))["type"] == "error"
    assert await stored(db, "general") == [("message 1", grace.id)]

    # Whether a socket may post is decided when it connects, from the session's login.
    await log_in("grace")
    async with client.ws_connect("/chat/general/ws") as ws:
        await receive(ws)
        await ws.send_json({"text": "now I can"})
        assert (await receive(ws))["text"] == "now I can"


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ({"text": ""}, "Write something first."),
        ({"text": "   \n "}, "Write something first."),
        ({"text": 42}, "Write something first."),
        ({"message": "hi"}, "Write something first."),
        (["hi"], "Write something first."),
        ({"text": "x" * 501}, "A message has at most 500 characters; this one has 501."),
        ("not json", 'Send a message as JSON: {"text": "..."}.'),
        (b"\x00binary", 'Send a message as JSON text: {"text": "..."}.'),
    ],
)
async def test_a_message_is_checked_before_it_is_stored(
    db: AsyncSession, client: Client, grace: User, log_in: LogIn, frame: Any, error: str
) -> None:
    await log_in("grace")
    async with client.ws_connect("/chat/general/ws") as ws:
        await receive(ws)
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        elif isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_json(frame)
        assert await receive(ws) == {"type": "error", "error": error}
        # The longest message there may be goes through.
        await ws.send_json({"text": "y" * 500})
        assert (await receive(ws))["text"] == "y" * 500
    assert await stored(db, "general") == [("y" * 500, grace.id)]


async def test_a_socket_opened_by_another_sites_page_is_refused(
    db: AsyncSession, client: Client, grace: User, log_in: LogIn
) -> None:
    await log_in("grace")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/chat/general/ws", origin="https://evil.example")
    assert refused.value.status == 403
    # The site's own pages are welcome.
    async with client.ws_connect(
        "/chat/general/ws", origin=str(client.make_url("/")).rstrip("/")
    ) as ws:
        assert (await receive(ws))["type"] == "history"
    count = await db.scalar(select(func.count()).select_from(ChatMessage))
    assert count == 0


async def test_a_user_posts_at_most_20_messages_a_minute(
    db: AsyncSession, client: Client, grace: User, log_in: LogIn
) -> None:
    await log_in("grace")
    async with (
        client.ws_connect("/chat/general/ws") as general,
        client.ws_connect("/chat/other/ws") as other,
    ):
        for ws in (general, other):
            await receive(ws)
        for n in range(1, 21):
            await general.send_json({"text": f"flood {n}"})
            assert (await receive(general))["text"] == f"flood {n}"
        # Every room counts: the 21st is refused wherever it is written.
        await other.send_json({"text": "flood 21"})
        refused = await receive(other)
        assert refused["type"] == "error"
        assert refused["error"].startswith("You are writing too fast (20 per 1 minute): wait ")
    assert len(await stored(db, "general")) == 20
    assert await stored(db, "other") == []
