"""The chat's pages and its websocket.

The room's page shows the last messages (so it reads without JavaScript too); its
script then opens ``/chat/<room>/ws``, which sends the last messages again (the ones
missed while the page loaded or the socket was down) and then every new one. Only a
logged-in user may post; anybody may read.

The websocket lives as long as the page stays open, so it never uses the request's
database session after the upgrade, which would hold a pooled connection all that time:
the user is read before it (``open_websocket`` then commits that session and gives its
connection back), and each later database access is a short ``session_scope`` of its
own.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from aiosite import (
    ChannelUnavailable,
    broadcast,
    db_session,
    hit_rate_limit,
    open_websocket,
    render,
    session_scope,
    template,
    url_for,
)
from aiosite.contrib.auth import current_user

from . import messages
from .messages import HISTORY

logger = logging.getLogger(__name__)

ACTIVE_ROOMS = 10
# Per user, in every room together: a lively conversation, not a flood.
MESSAGE_LIMIT = "20/minute"
# Offered on the rooms page before anybody has written anywhere.
SUGGESTED_ROOMS = ("general", "aiohttp", "help")


async def index(request: web.Request) -> web.Response:
    """``/chat/``: the rooms written in last and a form to open any room;
    ``?room=Async IO`` leads to ``/chat/async-io``, a name that cannot be a room's
    gets the form back with status 400."""
    typed = request.query.get("room")
    error = None
    if typed is not None:
        room = messages.room_name(typed)
        if room is not None:
            raise web.HTTPSeeOther(url_for(request, "chat:room", room=room))
        error = (
            "A room's name has 1 to 40 lowercase letters, digits and hyphens, "
            "e.g. general or async-io."
        )
    context = {
        "rooms": await messages.active_rooms(db_session(request), ACTIVE_ROOMS),
        "suggested": SUGGESTED_ROOMS,
        "typed": typed or "",
        "error": error,
    }
    return await render(request, "chat/index.html", context, status=400 if error else 200)


@template("chat/room.html")
async def room(request: web.Request) -> dict[str, Any]:
    name = request.match_info["room"]
    found = await messages.last_messages(db_session(request), name)
    return {
        "room": name,
        # Not "messages": base.html's flash messages have that name.
        "chat_messages": [messages.as_json(m, messages.author_name(m)) for m in found],
        "history": HISTORY,
    }


async def socket(request: web.Request) -> web.StreamResponse:
    """``/chat/<room>/ws``: ``{"type": "history", "messages": [...]}`` first, then each
    new message as ``{"type": "message", ...}``; a client sends ``{"text": "..."}``
    and gets ``{"type": "error", "error": "..."}`` when it may not post or the text
    is refused (nothing is stored then)."""
    room = request.match_info["room"]
    # Who may post is decided once, before the upgrade: logging out in another tab
    # leaves this socket as it was until the page reloads or reconnects.
    user = await current_user(request)
    author_id, author = (user.id, user.username) if user.is_authenticated else (None, None)
    async with (
        # Subscribed before the upgrade, so that a hub that is down (its Redis, say) is
        # a 503 the page retries rather than a socket that opens and closes; and before
        # the history is read, so that a message posted in between is both in the
        # history and on the channel (the script shows it once, by id) rather than in
        # neither.
        broadcast(request).subscribe(messages.channel(room)) as subscription,
        open_websocket(request) as ws,
    ):
        async with session_scope(request) as session:
            history = [
                messages.as_json(m, messages.author_name(m))
                for m in await messages.last_messages(session, room)
            ]
        await ws.send_json({"type": "history", "room": room, "messages": history})
        ws.forward(subscription)
        async for frame in ws:
            if frame.type is WSMsgType.TEXT:
                answers = await _post(request, room, author_id, author, frame.data)
            else:
                answers = [_error('Send a message as JSON text: {"text": "..."}.')]
            for answer in answers:
                await ws.send_json(answer)
    return ws


async def _post(
    request: web.Request, room: str, author_id: int | None, author: str | None, data: str
) -> list[dict[str, Any]]:
    """Store and publish one frame's message; the frames its sender gets back (none
    when all went well: their own message comes to them through the hub)."""
    if author_id is None:
        return [_error("Log in to write in this room.")]
    try:
        text = _text_of(data)
    except ValueError as exc:
        return [_error(str(exc))]

    async def by_author(request: web.Request) -> str:
        # The author known since the upgrade: auth's by_user_or_address would look the
        # user up again through the request's database session.
        return f"user:{author_id}"

    limited = await hit_rate_limit(request, MESSAGE_LIMIT, key=by_author, scope="chat.message")
    if not limited.allowed:
        return [
            _error(
                f"You are writing too fast ({limited.limit}): wait {limited.retry_after} s "
                "and send it again."
            )
        ]
    async with session_scope(request) as session:
        stored = await messages.store(session, room, author_id, text)
    message = messages.as_json(stored, author)
    # Published once committed: a message on the channel is always in the history of
    # whoever reconnects next.
    try:
        await broadcast(request).publish(messages.channel(room), message)
    except ChannelUnavailable as exc:
        logger.warning("Chat message %s stored but not broadcast: %s", stored.id, exc)
        # Not an error: the page must not offer to send it again.
        notice = "Your message is saved; the others see it when live updates are back."
        return [message, {"type": "notice", "notice": notice}]
    return []


def _error(text: str) -> dict[str, Any]:
    """A frame that says the client's message was refused (and not stored)."""
    return {"type": "error", "error": text}


def _text_of(data: str) -> str:
    """The text of a client's ``{"text": "..."}`` frame; ValueError says what is wrong."""
    try:
        frame = json.loads(data)
    except ValueError:
        raise ValueError('Send a message as JSON: {"text": "..."}.') from None
    text = frame.get("text") if isinstance(frame, dict) else None
    problem = messages.text_problem(text)
    if problem is not None or not isinstance(text, str):
        raise ValueError(problem)
    return text.strip()
