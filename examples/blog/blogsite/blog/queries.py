"""The blog's queries, shared by its pages, the home page and the JSON API."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.interfaces import ORMOption

from .models import Comment, Post, Tag, post_tag

# What a list of posts shows of each: its author's name and its tags.
SUMMARY = (selectinload(Post.author), selectinload(Post.tags))
# What a post's page shows: the summary's and its attachments. Its comments come a page
# at a time (post_comments): a post with a thousand of them must not load them all.
PAGE = (*SUMMARY, selectinload(Post.attachments))
# What the edit form needs: the tags and attachments it shows and may replace.
EDITING = (selectinload(Post.tags), selectinload(Post.attachments))


def published_posts() -> Select[Post]:
    """Published posts, newest first (the id breaks ties between equal timestamps)."""
    return select(Post).where(Post.published).order_by(Post.created.desc(), Post.id.desc())


def posts_tagged(tag: Tag) -> Select[Post]:
    return (
        published_posts()
        .join(post_tag, post_tag.c.post_id == Post.id)
        .where(post_tag.c.tag_id == tag.id)
    )


def post_comments(post: Post) -> Select[Comment]:
    """A post's comments with their authors, oldest first: a conversation reads down."""
    return (
        select(Comment)
        .where(Comment.post_id == post.id)
        .options(selectinload(Comment.author))
        .order_by(Comment.created, Comment.id)
    )


async def comment_count(session: AsyncSession, post: Post) -> int:
    statement = select(func.count()).select_from(Comment).where(Comment.post_id == post.id)
    return (await session.execute(statement)).scalar_one()


async def post_or_404(session: AsyncSession, slug: str, *options: ORMOption) -> Post:
    """The post at ``slug``, loaded with ``options`` (``SUMMARY``, ``PAGE``,
    ``selectinload(Post.tags)``), or a 404."""
    statement = select(Post).where(Post.slug == slug).options(*options)
    post = (await session.execute(statement)).scalar_one_or_none()
    if post is None:
        raise web.HTTPNotFound(text=f"There is no post at “{slug}”.")
    return post


async def latest_posts(session: AsyncSession, count: int) -> list[Post]:
    statement = published_posts().options(*SUMMARY).limit(count)
    return list((await session.execute(statement)).scalars())


async def tags_named(session: AsyncSession, wanted: list[tuple[str, str]]) -> list[Tag]:
    """The tags with these ``(name, slug)`` pairs, creating the missing ones.

    New tags are flushed here, on their own, so that a later flush of the post can fail
    only for the post's own reasons. Two requests making the same new tag at once: the
    post form saves in a SERIALIZABLE transaction (``run_transaction``), where on
    PostgreSQL the later one fails with a serialization failure rather than a unique
    violation, and its second run finds the tag. On SQLite, whose writers wait for each
    other, the later one's insert fails (the site answers 409), and sending the form
    again finds the tag.
    """
    if not wanted:
        return []
    slugs = [slug for _, slug in wanted]
    found = await session.execute(select(Tag).where(Tag.slug.in_(slugs)))
    by_slug = {tag.slug: tag for tag in found.scalars()}
    for name, slug in wanted:
        if slug not in by_slug:
            by_slug[slug] = Tag(name=name, slug=slug)
            session.add(by_slug[slug])
    await session.flush()
    return [by_slug[slug] for slug in slugs]
