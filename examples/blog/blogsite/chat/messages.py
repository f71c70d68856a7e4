"""Reading, checking and storing chat messages, and their JSON shape.

What a room's page renders, what the websocket sends on (re)connect and what it
publishes on the hub are the same dicts (``as_json``), so the browser's script draws a
message the same way whichever way it came.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from .models import ROOM_MAX, TEXT_MAX, ChatMessage

# Lowercase letters, digits and hyphens: a room's name is part of its address and of
# its hub channel (chat:<room>).
ROOM_PATTERN = rf"[a-z0-9-]{{1,{ROOM_MAX}}}"
_ROOM = re.compile(ROOM_PATTERN)
# What a room's page and a (re)connecting socket show of the past.
HISTORY = 50


def channel(room: str) -> str:
    """The hub channel of ``room``'s new messages."""
    return f"chat:{room}"


def room_name(typed: str) -> str | None:
    """The room a visitor typed into the rooms page's form ("Async IO" is
    ``async-io``), or None when it cannot be one."""
    name = re.sub(r"\s+", "-", typed.strip().lower())
    return name if _ROOM.fullmatch(name) else None


def text_problem(text: object) -> str | None:
    """Why ``text`` (from a client's frame) cannot be posted, or None."""
    if not isinstance(text, str) or not text.strip():
        return "Write something first."
    if len(text) > TEXT_MAX:
        return f"A message has at most {TEXT_MAX} characters; this one has {len(text)}."
    return None


async def last_messages(session: AsyncSession, room: str) -> list[ChatMessage]:
    """The room's last ``HISTORY`` messages, oldest first, with their authors."""
    newest = (
        select(ChatMessage)
        .where(ChatMessage.room == room)
        .order_by(ChatMessage.id.desc())
        .limit(HISTORY)
        .options(selectinload(ChatMessage.author))
    )
    return list(reversed((await session.scalars(newest)).all()))


async def active_rooms(session: AsyncSession, count: int) -> list[tuple[str, int]]:
    """The ``count`` rooms written in last, with how many messages each holds."""
    last = func.max(ChatMessage.id).label("last")
    statement = (
        select(ChatMessage.room, func.count().label("messages"), last)
        .group_by(ChatMessage.room)
        .order_by(last.desc())
        .limit(count)
    )
    return [(row.room, row.messages) for row in await session.execute(statement)]


async def store(session: AsyncSession, room: str, author_id: int, text: str) -> ChatMessage:
    """Add a message (committed when the caller's transaction ends)."""
    message = ChatMessage(room=room, author_id=author_id, text=text)
    session.add(message)
    await session.flush()  # its id and created, for the frame published after the commit
    return message


def as_json(message: ChatMessage, author: str | None) -> dict[str, Any]:
    """A message as the browser's script and the hub carry it."""
    return {
        "type": "message",
        "id": message.id,
        "author": author,
        "text": message.text,
        "created": message.created.isoformat(),
    }


def author_name(message: ChatMessage) -> str | None:
    """The message's author (loaded with it); None once the account is deleted."""
    return message.author.username if message.author is not None else None
