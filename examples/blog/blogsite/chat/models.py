"""The chat's one table: a message in a room, by an account of aiosite.contrib.auth.

A room is no row of its own: it is the name its messages share, so a room exists as
soon as somebody opens it, and costs nothing until somebody writes in it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aiosite import Model
from aiosite.contrib.auth import User

ROOM_MAX = 40
TEXT_MAX = 500


def _now() -> datetime:
    return datetime.now(UTC)


class ChatMessage(Model):
    __tablename__ = "chat_message"
    # A room's page reads its newest messages: the room's rows by id, from the end.
    __table_args__ = (Index("ix_chat_message_room_id", "room", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    room: Mapped[str] = mapped_column(String(ROOM_MAX))
    # None once the account is deleted: what was said stays, by nobody.
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_user.id", ondelete="SET NULL"), index=True, default=None
    )
    text: Mapped[str] = mapped_column(String(TEXT_MAX))
    # sql(), not sqlalchemy's text(): the column above is called text.
    created: Mapped[datetime] = mapped_column(default=_now, server_default=sql("CURRENT_TIMESTAMP"))

    author: Mapped[User | None] = relationship(User, lazy="raise")
