"""The blog's tables: posts, their comments and attachments, and tags shared between posts.

Posts and comments belong to accounts of ``aiosite.contrib.auth`` (``auth_user``). When
an account is deleted its posts and comments stay, with no author (``SET NULL``): what
was written stays readable.

Relationships are ``lazy="raise"``: async SQLAlchemy cannot load them on attribute
access (in a template, say), so every query names what it needs with ``selectinload``
and a forgotten one fails loudly instead of with a greenlet error.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aiosite import Model, Timestamped
from aiosite.contrib.auth import User

TITLE_MAX = 200
SLUG_MAX = 200
TAG_MAX = 50
# An attachment's storage name (folder, date and file name) and the name it came with.
STORED_NAME_MAX = 255
FILENAME_MAX = 255
CONTENT_TYPE_MAX = 100

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
    # Who wrote it; None once their account is deleted (or for posts older than accounts).
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_user.id", ondelete="SET NULL"), index=True, default=None
    )
    published: Mapped[bool] = mapped_column(default=False)

    author: Mapped[User | None] = relationship(User, lazy="raise")
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
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="post",
        order_by="Attachment.id",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Comment(Model):
    __tablename__ = "blog_comment"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("blog_post.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_user.id", ondelete="SET NULL"), index=True, default=None
    )
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=_now, server_default=func.now())

    post: Mapped[Post] = relationship(back_populates="comments", lazy="raise")
    author: Mapped[User | None] = relationship(User, lazy="raise")


class Tag(Model):
    __tablename__ = "blog_tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(TAG_MAX), unique=True)
    slug: Mapped[str] = mapped_column(String(TAG_MAX), unique=True)

    posts: Mapped[list[Post]] = relationship(
        secondary=post_tag, back_populates="tags", lazy="raise", passive_deletes=True
    )


class Attachment(Model):
    """A file uploaded with a post: the file is in the site's upload storage under
    ``stored_name``; this row says whose it is and how to serve it."""

    __tablename__ = "blog_attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("blog_post.id", ondelete="CASCADE"), index=True)
    stored_name: Mapped[str] = mapped_column(String(STORED_NAME_MAX), unique=True)
    # The name it had on the uploader's computer, cleaned: shown, and offered as the
    # download's name, never used as a path.
    filename: Mapped[str] = mapped_column(String(FILENAME_MAX))
    content_type: Mapped[str] = mapped_column(String(CONTENT_TYPE_MAX))
    size: Mapped[int]
    created: Mapped[datetime] = mapped_column(
        default=_now, server_default=text("CURRENT_TIMESTAMP")
    )

    post: Mapped[Post] = relationship(back_populates="attachments", lazy="raise")

    @property
    def is_image(self) -> bool:
        """Shown on the post page with ``<img>``, and served inline."""
        return self.content_type.startswith("image/")
