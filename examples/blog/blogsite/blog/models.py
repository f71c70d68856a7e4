"""The blog's tables: posts, their comments, and tags shared between posts.

Relationships are ``lazy="raise"``: async SQLAlchemy cannot load them on attribute
access (in a template, say), so every query names what it needs with ``selectinload``
and a forgotten one fails loudly instead of with a greenlet error.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aiosite import Model, Timestamped

TITLE_MAX = 200
SLUG_MAX = 200
AUTHOR_MAX = 100
TAG_MAX = 50

post_tag = Table(
    "blog_post_tag",
    Model.metadata,
    Column("post_id", ForeignKey("blog_post.id", ondelete="CASCADE"), primary_key=True),
    # Finding a tag's posts goes through tag_id; the primary key serves post_id.
    Column("tag_id", ForeignKey("blog_tag.id", ondelete="CASCADE"), primary_key=True, index=True),
)


def _now() -> datetime:
    return datetime.now(UTC)


class Post(Timestamped, Model):
    __tablename__ = "blog_post"
    # The list pages and the API read published posts newest first.
    __table_args__ = (Index("ix_blog_post_published_created", "published", "created"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    slug: Mapped[str] = mapped_column(String(SLUG_MAX), unique=True)
    body: Mapped[str] = mapped_column(Text)
    # A plain name until the site has accounts.
    author: Mapped[str] = mapped_column(String(AUTHOR_MAX), default="")
    published: Mapped[bool] = mapped_column(default=False)

    tags: Mapped[list[Tag]] = relationship(
        secondary=post_tag,
        back_populates="posts",
        order_by="Tag.slug",
        lazy="raise",
        passive_deletes=True,
    )
    comments: Mapped[list[Comment]] = relationship(
        back_populates="post",
        order_by="Comment.created",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Comment(Model):
    __tablename__ = "blog_comment"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("blog_post.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(AUTHOR_MAX))
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=_now, server_default=func.now())

    post: Mapped[Post] = relationship(back_populates="comments", lazy="raise")


class Tag(Model):
    __tablename__ = "blog_tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(TAG_MAX), unique=True)
    slug: Mapped[str] = mapped_column(String(TAG_MAX), unique=True)

    posts: Mapped[list[Post]] = relationship(
        secondary=post_tag, back_populates="tags", lazy="raise", passive_deletes=True
    )
