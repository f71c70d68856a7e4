"""The blog's pages: the post list, a post with its comments, a tag's posts, and the
forms that write and edit posts.

Forms follow one pattern: a GET shows the form; a POST with errors shows it again with
status 400, the typed values kept and each error next to its field; a POST that saves
redirects with 303 See Other, so reloading the next page does not post again.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from aiosite import db_session, get_or_404, paginate, render, template, url_for

from .forms import DUPLICATE_SLUG, CommentForm, PostData, PostForm
from .models import Comment, Post, Tag
from .queries import post_or_404, posts_tagged, published_posts, tags_named

POSTS_PER_PAGE = 10
# How the database names the unique slug: PostgreSQL gives the constraint's name
# (models' naming convention), SQLite the table and column.
_SLUG_CONSTRAINT = ("uq_blog_post_slug", "blog_post.slug")


@template("blog/index.html")
async def index(request: web.Request) -> dict[str, Any]:
    statement = published_posts().options(selectinload(Post.tags))
    page = await paginate(
        db_session(request), statement, page=request.query.get("page"), per_page=POSTS_PER_PAGE
    )
    return {"page": page}


@template("blog/tag.html")
async def tag(request: web.Request) -> dict[str, Any]:
    session = db_session(request)
    found = await get_or_404(session, Tag, slug=request.match_info["slug"])
    statement = posts_tagged(found).options(selectinload(Post.tags))
    page = await paginate(
        session, statement, page=request.query.get("page"), per_page=POSTS_PER_PAGE
    )
    return {"tag": found, "page": page}


async def detail(request: web.Request) -> web.Response:
    post = await post_or_404(
        db_session(request), request.match_info["slug"], Post.tags, Post.comments
    )
    return await render(request, "blog/detail.html", {"post": post, "form": CommentForm()})


async def comment(request: web.Request) -> web.Response:
    session = db_session(request)
    post = await post_or_404(session, request.match_info["slug"], Post.tags, Post.comments)
    if not post.published:
        raise web.HTTPNotFound(text="Comments open when the post is published.")
    form = CommentForm.from_data(await request.post())
    if not form.validate():
        context = {"post": post, "form": form}
        return await render(request, "blog/detail.html", context, status=400)
    added = Comment(post_id=post.id, author=form.author, body=form.body)
    session.add(added)
    await session.flush()  # for its id in the link below; committed after the handler
    location = url_for(request, "blog:detail", slug=post.slug)
    raise web.HTTPSeeOther(f"{location}#comment-{added.id}")


class NewPost(web.View):
    async def get(self) -> web.Response:
        return await _render_form(self.request, PostForm(), editing=None)

    async def post(self) -> web.Response:
        form = PostForm.from_data(await self.request.post())
        data = form.validate()
        if data is None:
            return await _render_form(self.request, form, editing=None, status=400)
        return await _save(self.request, Post(), data, form, editing=None)


class EditPost(web.View):
    async def get(self) -> web.Response:
        post = await post_or_404(db_session(self.request), self._slug, Post.tags)
        return await _render_form(self.request, PostForm.from_post(post), editing=post.slug)

    async def post(self) -> web.Response:
        # The tags are loaded so that assigning new ones can tell which to remove.
        post = await post_or_404(db_session(self.request), self._slug, Post.tags)
        form = PostForm.from_data(await self.request.post())
        data = form.validate()
        if data is None:
            return await _render_form(self.request, form, editing=post.slug, status=400)
        return await _save(self.request, post, data, form, editing=post.slug)

    @property
    def _slug(self) -> str:
        return self.request.match_info["slug"]


async def _save(
    request: web.Request, post: Post, data: PostData, form: PostForm, *, editing: str | None
) -> web.Response:
    session = db_session(request)
    tags = await tags_named(session, data.tags)
    post.title = data.title
    post.slug = data.slug
    post.body = data.body
    post.author = data.author
    post.published = data.published
    post.tags = tags
    session.add(post)
    try:
        await session.flush()
    except IntegrityError as exc:
        # The unique constraint is the guard: a SELECT beforehand could not see a post
        # another request is saving at the same moment. The rollback also undoes tags
        # made above, and expires `post`, which nothing below reads.
        await session.rollback()
        if not any(name in str(exc.orig) for name in _SLUG_CONSTRAINT):
            raise
        form.errors["slug"] = DUPLICATE_SLUG
        return await _render_form(request, form, editing=editing, status=400)
    raise web.HTTPSeeOther(url_for(request, "blog:detail", slug=data.slug))


async def _render_form(
    request: web.Request, form: PostForm, *, editing: str | None, status: int = 200
) -> web.Response:
    """The post form; ``editing`` is the slug of the post being edited (None: a new post)."""
    context: dict[str, Any]
    if editing is None:
        action = url_for(request, "blog:new")
        context = {"heading": "New post", "cancel": url_for(request, "blog:index")}
    else:
        action = url_for(request, "blog:edit", slug=editing)
        context = {"heading": "Edit post", "cancel": url_for(request, "blog:detail", slug=editing)}
    context |= {"form": form, "action": action}
    return await render(request, "blog/form.html", context, status=status)
