"""The blog's pages: the post list, a post with its comments, a tag's posts, and the
forms that write and edit posts.

Forms follow one pattern: a GET shows the form; a POST with errors shows it again with
status 400, the typed values kept and each error next to its field; a POST that saves
redirects with 303 See Other, so reloading the next page does not post again.

Writing needs an account: ``@login_required`` sends anonymous visitors to the login page
and, once logged in, back to the form. Who may see and edit which post is decided in
access.py.

A post's comments come ``COMMENTS_PER_PAGE`` at a time, oldest first (``?page=N``; a page
that is not a number or past the last is a 404, as ``paginate`` answers), and each user
may post ``COMMENT_LIMIT`` of them.

Publishing a post (a new one, or a draft saved with "Published" ticked) announces it on
the broadcast hub's ``POSTS_CHANNEL``, which every open page's banner listens to
(``home:post_events``, ``static/live.js``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite import (
    ChannelUnavailable,
    broadcast,
    db_session,
    flash,
    get_or_404,
    hit_rate_limit,
    paginate,
    render,
    run_transaction,
    settings_of,
    template,
    url_for,
)
from aiosite.contrib.auth import by_user_or_address, current_user, login_needed, login_required
from aiosite.uploads import UploadForm, UploadSettings, read_upload_form

from .access import can_edit, check_can_edit, check_can_see
from .attachments import (
    ATTACHMENTS_MAX_SIZE,
    MAX_ATTACHMENTS,
    accepts_attachments,
    attachments_of,
    delete_files,
)
from .forms import DUPLICATE_SLUG, CommentForm, PostData, PostForm
from .models import Attachment, Comment, Post, Tag
from .queries import (
    EDITING,
    PAGE,
    SUMMARY,
    comment_count,
    post_comments,
    post_or_404,
    posts_tagged,
    published_posts,
    tags_named,
)

POSTS_PER_PAGE = 10
COMMENTS_PER_PAGE = 20
# Per signed-in user, on every post together: enough for a conversation, not for a flood.
COMMENT_LIMIT = "5/minute"
# How the database names the unique slug: PostgreSQL gives the constraint's name
# (models' naming convention), SQLite the table and column.
_SLUG_CONSTRAINT = ("uq_blog_post_slug", "blog_post.slug")
FILES_AGAIN = "Choose the files again: they are not kept while the post has errors."
# The hub channel of newly published posts: {"id", "title", "url"}.
POSTS_CHANNEL = "posts"

logger = logging.getLogger(__name__)


@template("blog/index.html")
async def index(request: web.Request) -> dict[str, Any]:
    statement = published_posts().options(*SUMMARY)
    page = await paginate(
        db_session(request), statement, page=request.query.get("page"), per_page=POSTS_PER_PAGE
    )
    return {"page": page}


@template("blog/tag.html")
async def tag(request: web.Request) -> dict[str, Any]:
    session = db_session(request)
    found = await get_or_404(session, Tag, slug=request.match_info["slug"])
    statement = posts_tagged(found).options(*SUMMARY)
    page = await paginate(
        session, statement, page=request.query.get("page"), per_page=POSTS_PER_PAGE
    )
    return {"tag": found, "page": page}


async def detail(request: web.Request) -> web.Response:
    post = await post_or_404(db_session(request), request.match_info["slug"], *PAGE)
    await check_can_see(request, post)
    return await _render_post(request, post, CommentForm(), page=request.query.get("page"))


async def comment(request: web.Request) -> web.Response:
    session = db_session(request)
    post = await post_or_404(session, request.match_info["slug"], *PAGE)
    await check_can_see(request, post)
    if not post.published:
        raise web.HTTPNotFound(text="Comments open when the post is published.")
    user = await current_user(request)
    if not user.is_authenticated:
        # Only logged-in visitors get the form; this one's session ended since (it
        # logged out in another tab, or its password was changed). After logging in
        # they come back to the post, not to this POST-only address.
        raise login_needed(request, next_path=url_for(request, "blog:detail", slug=post.slug))
    form = CommentForm.from_data(await request.post())
    # Counted here rather than with @rate_limit, whose 429 page would lose what was typed:
    # the form comes back with it and says how long to wait.
    limited = await hit_rate_limit(
        request, COMMENT_LIMIT, key=by_user_or_address, scope="blog.comment"
    )
    if not limited.allowed:
        form.errors["body"] = (
            f"You are commenting too fast ({limited.limit}): wait "
            f"{_seconds(limited.retry_after)} and post it again."
        )
        response = await _render_post(request, post, form, status=429)
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    if not form.validate():
        return await _render_post(request, post, form, status=400)
    added = Comment(post_id=post.id, author_id=user.id, body=form.body)
    session.add(added)
    await session.flush()  # for its id in the link below; committed after the handler
    # The new comment is the last: on the last page.
    last = -(-(await comment_count(session, post)) // COMMENTS_PER_PAGE)
    location = url_for(request, "blog:detail", slug=post.slug, page=last if last > 1 else None)
    raise web.HTTPSeeOther(f"{location}#comment-{added.id}")


async def _render_post(
    request: web.Request,
    post: Post,
    form: CommentForm,
    *,
    page: str | None = "last",
    status: int = 200,
) -> web.Response:
    """The post's page with one page of its comments: a form sent back shows the last,
    where the comment will go."""
    comments = await paginate(
        db_session(request), post_comments(post), page=page, per_page=COMMENTS_PER_PAGE
    )
    context = {
        "post": post,
        "comments": comments,
        "form": form,
        "can_edit": await can_edit(request, post),
    }
    return await render(request, "blog/detail.html", context, status=status)


def _seconds(count: int) -> str:
    return "1 second" if count == 1 else f"{count} seconds"


class NewPost(web.View):
    @login_required
    async def get(self) -> web.Response:
        return await _render_form(self.request, PostForm(), editing=None)

    @login_required
    @accepts_attachments
    async def post(self) -> web.Response:
        user = await current_user(self.request)
        upload = await read_upload_form(self.request)
        return await _save(self.request, upload, editing=None, author_id=user.id)


class EditPost(web.View):
    @login_required
    async def get(self) -> web.Response:
        post = await self._post()
        return await _render_form(self.request, PostForm.from_post(post), editing=post)

    @login_required
    @accepts_attachments
    async def post(self) -> web.Response:
        # Checked before the body is read: a refused request stores no file.
        post = await self._post()
        upload = await read_upload_form(self.request)
        return await _save(self.request, upload, editing=post)

    async def _post(self) -> Post:
        # The tags and attachments are loaded so that assigning new ones can tell which
        # to remove; the form lists the attachments.
        post = await post_or_404(
            db_session(self.request), self.request.match_info["slug"], *EDITING
        )
        await check_can_edit(self.request, post)
        return post


async def _save(
    request: web.Request,
    upload: UploadForm,
    *,
    editing: Post | None,
    author_id: int | None = None,
) -> web.Response:
    """Save the form: a new post by ``author_id``, or ``editing`` (loaded with EDITING)."""
    form = PostForm.from_data(upload.fields)
    data = form.validate()
    if data is None:
        return await _refuse(request, form, upload, editing=editing)

    async def save(session: AsyncSession) -> tuple[int, list[Attachment]]:
        # One run of the save, in a transaction of its own: the post, its tags (made
        # when new) and attachments, read and written with this run's session. Returns
        # the post's id and the attachments it removes, whose files are deleted once it
        # has committed.
        if editing is None:
            post = Post(author_id=author_id, tags=[], attachments=[])
        else:
            post = await get_or_404(session, Post, editing.id, options=[*EDITING])
        removed = [a for a in post.attachments if a.id in data.remove]
        _apply(post, data, await tags_named(session, data.tags))
        post.attachments = [
            *(a for a in post.attachments if a.id not in data.remove),
            *attachments_of(upload),
        ]
        session.add(post)
        await session.flush()
        return post.id, removed

    was_published = editing is not None and editing.published
    try:
        # SERIALIZABLE: two posts naming the same new tag at once is, on PostgreSQL, a
        # serialization failure for one of them, and run_transaction saves it again; its
        # second run finds the tag (queries.tags_named).
        post_id, removed = await run_transaction(request, save, isolation_level="SERIALIZABLE")
    except IntegrityError as exc:
        # The unique constraint is the guard: a SELECT beforehand could not see a post
        # another request is saving at the same moment. The run was rolled back as a
        # whole, the tags it made included; the request's own objects (the user the
        # page's header names, the post being edited) are as they were.
        if not any(name in str(exc.orig) for name in _SLUG_CONSTRAINT):
            raise
        form.errors["slug"] = DUPLICATE_SLUG
        return await _refuse(request, form, upload, editing=editing)
    # The rows are gone, committed; now their files.
    await delete_files(request, removed)
    location = url_for(request, "blog:detail", slug=data.slug)
    if data.published and not was_published:
        await _announce(request, {"id": post_id, "title": data.title, "url": location})
    await flash(request, "The post is saved.", "success")
    raise web.HTTPSeeOther(location)


async def _announce(request: web.Request, post: dict[str, Any]) -> None:
    """Tell the open pages that ``post`` was just published (committed already)."""
    try:
        await broadcast(request).publish(POSTS_CHANNEL, post)
    except ChannelUnavailable as exc:
        # The post is saved whatever happens here: answering 503 now would tell its
        # author it was not, and they would send it again. Only the live notice is
        # lost; the post is on the lists for everybody who loads a page.
        logger.warning("Post %s published but not announced: %s", post["id"], exc)


def _apply(post: Post, data: PostData, tags: list[Tag]) -> None:
    post.title = data.title
    post.slug = data.slug
    post.body = data.body
    post.published = data.published
    post.tags = tags


async def _refuse(
    request: web.Request, form: PostForm, upload: UploadForm, *, editing: Post | None
) -> web.Response:
    """The form again, with its errors; the files it brought are deleted (a browser
    cannot be given them back), and it says so."""
    if upload.files:
        await upload.discard()
        form.errors.setdefault("attachments", FILES_AGAIN)
    return await _render_form(request, form, editing=editing, status=400)


async def _render_form(
    request: web.Request, form: PostForm, *, editing: Post | None, status: int = 200
) -> web.Response:
    """The post form; ``editing`` is the post being edited (None: a new post), with its
    attachments loaded."""
    context: dict[str, Any]
    if editing is None:
        action = url_for(request, "blog:new")
        context = {"heading": "New post", "cancel": url_for(request, "blog:index")}
    else:
        action = url_for(request, "blog:edit", slug=editing.slug)
        context = {
            "heading": "Edit post",
            "cancel": url_for(request, "blog:detail", slug=editing.slug),
        }
    context |= {
        "form": form,
        "action": action,
        "attachments": editing.attachments if editing is not None else [],
        "accepted_types": settings_of(request).section(UploadSettings).allowed_types,
        "max_size": ATTACHMENTS_MAX_SIZE,
        "max_files": MAX_ATTACHMENTS,
    }
    return await render(request, "blog/form.html", context, status=status)
