"""Accounts on the blog: signing up and logging in, writing as yourself, who may edit
which post, and commenting as a logged-in user."""

from blogsite.blog.models import Comment, Post
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from support import PASSWORD, AddPosts, AddUser, Client, LogIn, PostForm, form_token

from aiosite.contrib.auth import User, grant
from aiosite.testing import csrf_token

EDIT = {"title": "Changed", "slug": "post-1", "body": "Changed text.", "published": "on"}


async def stored_post(db: AsyncSession, slug: str) -> Post:
    statement = select(Post).where(Post.slug == slug).execution_options(populate_existing=True)
    return (await db.execute(statement)).scalar_one()


async def test_anonymous_visitors_are_offered_to_log_in_or_sign_up(
    db: AsyncSession, client: Client
) -> None:
    resp = await client.get("/blog/?page=1")
    html = await resp.text()
    # Back to this page after logging in.
    assert '<a href="/auth/login?next=/blog/?page%3D1">Log in</a>' in html
    assert '<a href="/auth/register">Sign up</a>' in html
    assert "Log out" not in html
    assert 'class="username"' not in html
    # The header offers writing to logged-in users; the blog's own button leads anyone
    # to the form, through the login page.
    assert '<a href="/blog/new">Write a post</a>' not in html
    assert '<a class="button" href="/blog/new">Write a post</a>' in html
    # Reading pages makes no session: no cookie for visitors who never log in.
    assert "Set-Cookie" not in resp.headers


async def test_sign_up_logs_in_and_the_navigation_says_who(
    db: AsyncSession, client: Client
) -> None:
    page = await (await client.get("/auth/register")).text()
    assert '<a href="/auth/register" aria-current="page">Sign up</a>' in page
    data = {
        "username": "grace",
        "email": "grace@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "csrf_token": form_token(page),
    }
    resp = await client.post("/auth/register", data=data, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/blog/"  # auth.login_redirect

    html = await (await client.get("/blog/")).text()
    assert '<p class="flash flash-success">Welcome, grace: your account is ready.</p>' in html
    assert '<span class="username" title="Logged in as grace">grace</span>' in html
    assert '<a href="/blog/new">Write a post</a>' in html
    assert '<form class="logout" method="post" action="/auth/logout">' in html
    assert "Log in</a>" not in html
    user = (await db.execute(select(User))).scalar_one()
    assert (user.username, user.email, user.is_staff) == ("grace", "grace@example.com", False)


async def test_log_in_and_log_out(db: AsyncSession, client: Client, add_user: AddUser) -> None:
    await add_user("grace")
    page = await (await client.get("/auth/login")).text()
    data = {"username": "grace", "password": "wrong password", "csrf_token": form_token(page)}
    resp = await client.post("/auth/login", data=data)
    assert resp.status == 400
    assert "Enter a correct username and password." in await resp.text()

    data = {"username": "grace", "password": PASSWORD, "csrf_token": form_token(page)}
    resp = await client.post("/auth/login", data=data)
    assert resp.status == 200  # redirected to /blog/
    html = await resp.text()
    assert "You are logged in as grace." in html
    assert '<span class="username" title="Logged in as grace">grace</span>' in html

    # The Log out button is a form with its CSRF token, as it must be.
    resp = await client.post("/auth/logout", data={"csrf_token": form_token(html)})
    assert resp.status == 200
    html = await resp.text()
    assert "You are logged out." in html
    assert "Log in</a>" in html
    assert 'class="username"' not in html


async def test_writing_needs_an_account_and_comes_back_after_login(
    db: AsyncSession, client: Client, add_user: AddUser
) -> None:
    await add_user("ada")
    resp = await client.get("/blog/new", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/auth/login?next=/blog/new"

    page = await (await client.get(resp.headers["Location"])).text()
    assert '<input type="hidden" name="next" value="/blog/new">' in page
    data = {"username": "ada", "password": PASSWORD, "next": "/blog/new"}
    resp = await client.post(
        "/auth/login", data={**data, "csrf_token": form_token(page)}, allow_redirects=False
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/blog/new"
    resp = await client.get("/blog/new")
    assert resp.status == 200
    assert "<h1>New post</h1>" in await resp.text()


async def test_saving_a_post_needs_an_account_too(
    db: AsyncSession, client: Client, post_form: PostForm
) -> None:
    resp = await post_form("/blog/new", {"title": "Hi", "body": "Text."})
    assert resp.status == 303
    assert resp.headers["Location"] == "/auth/login?next=/blog/new"
    assert (await db.execute(select(Post))).first() is None


async def test_a_post_is_written_as_the_logged_in_user(
    db: AsyncSession, client: Client, post_form: PostForm, add_user: AddUser, log_in: LogIn
) -> None:
    grace = await add_user("grace")
    await log_in("grace")
    data = {"title": "Grace's post", "body": "Text.", "published": "on"}
    resp = await post_form("/blog/new", data)
    assert resp.status == 303
    post = await stored_post(db, "grace-s-post")
    assert post.author_id == grace.id

    for path in ("/blog/", "/blog/grace-s-post", "/"):
        html = await (await client.get(path)).text()
        assert '&middot; <span class="author">grace</span>' in html, path
    data = await (await client.get(f"/api/posts/{post.id}")).json()
    assert data["author"] == "grace"


async def test_only_the_author_edits_a_post(
    db: AsyncSession,
    client: Client,
    post_form: PostForm,
    add_posts: AddPosts,
    add_user: AddUser,
    log_in: LogIn,
) -> None:
    await add_posts(1)  # by ada
    await add_user("bob")
    await log_in("bob")

    html = await (await client.get("/blog/post-1")).text()
    assert "Edit this post" not in html
    for resp in (await client.get("/blog/post-1/edit"), await post_form("/blog/post-1/edit", EDIT)):
        assert resp.status == 403
        html = await resp.text()
        # The site's own error page, with the reason.
        assert "<h1>Forbidden</h1>" in html
        assert "Only the author of this post and the editors can change it." in html
    assert (await stored_post(db, "post-1")).title == "Post 1"

    # Ada, the author, can.
    await log_in("ada")
    html = await (await client.get("/blog/post-1")).text()
    assert '<a href="/blog/post-1/edit">Edit this post</a>' in html
    resp = await post_form("/blog/post-1/edit", EDIT)
    assert resp.status == 303
    assert (await stored_post(db, "post-1")).title == "Changed"


async def test_staff_edit_any_post_and_it_stays_the_authors(
    db: AsyncSession,
    client: Client,
    post_form: PostForm,
    add_posts: AddPosts,
    add_user: AddUser,
    log_in: LogIn,
    ada: User,
) -> None:
    await add_posts(1, published=False)  # a draft: staff see it too
    await add_user("editor", staff=True)
    await log_in("editor")
    html = await (await client.get("/blog/post-1")).text()
    assert '<a href="/blog/post-1/edit">Edit this post</a>' in html
    assert (await client.get("/blog/post-1/edit")).status == 200
    resp = await post_form("/blog/post-1/edit", EDIT)
    assert resp.status == 303
    post = await stored_post(db, "post-1")
    assert (post.title, post.author_id) == ("Changed", ada.id)


async def test_the_change_post_permission_edits_any_post(
    db: AsyncSession,
    client: Client,
    post_form: PostForm,
    add_posts: AddPosts,
    add_user: AddUser,
    log_in: LogIn,
) -> None:
    await add_posts(1)
    bob = await add_user("bob")
    await grant(db, bob, "blog.change_post", known={"blog.change_post"})
    await db.commit()
    await log_in("bob")
    resp = await post_form("/blog/post-1/edit", EDIT)
    assert resp.status == 303
    assert (await stored_post(db, "post-1")).title == "Changed"


async def test_someone_elses_draft_does_not_exist(
    db: AsyncSession, client: Client, add_posts: AddPosts, add_user: AddUser, log_in: LogIn
) -> None:
    await add_posts(1, published=False)
    await add_user("bob")
    await log_in("bob")
    for path in ("/blog/post-1", "/blog/post-1/edit"):
        assert (await client.get(path)).status == 404, path


async def test_anonymous_edit_goes_to_the_login_page(
    db: AsyncSession, client: Client, add_posts: AddPosts
) -> None:
    await add_posts(1)
    resp = await client.get("/blog/post-1/edit", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/auth/login?next=/blog/post-1/edit"


async def test_posts_and_comments_of_a_deleted_account_stay_readable(
    db: AsyncSession, client: Client, add_posts: AddPosts, add_user: AddUser, ada: User
) -> None:
    (post,) = await add_posts(1)
    bob = await add_user("bob")
    db.add(Comment(post_id=post.id, author_id=bob.id, body="Bob was here."))
    await db.commit()
    await db.delete(ada)
    await db.delete(bob)
    await db.commit()

    resp = await client.get("/blog/post-1")
    assert resp.status == 200
    html = await resp.text()
    assert "<h1>Post 1</h1>" in html
    assert 'class="author"' not in html
    assert "<strong>Anonymous</strong>" in html
    assert "<p>Bob was here.</p>" in html


async def test_anonymous_visitors_get_a_link_to_log_in_instead_of_the_comment_form(
    db: AsyncSession, client: Client, add_posts: AddPosts
) -> None:
    await add_posts(1)
    html = await (await client.get("/blog/post-1")).text()
    assert "comment-form" not in html
    assert (
        '<a href="/auth/login?next=/blog/post-1">Log in to comment</a> or '
        '<a href="/auth/register">sign up</a>.'
    ) in html

    # A session without a user (logged out elsewhere, say) posting anyway: sent to log in
    # and back to the post, and nothing is stored.
    data = {"body": "Hi", "csrf_token": await csrf_token(client)}
    resp = await client.post("/blog/post-1/comments", data=data, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/auth/login?next=/blog/post-1"
    # A client that asks for JSON is told, not redirected to a page.
    headers = {"Accept": "application/json"}
    resp = await client.post("/blog/post-1/comments", data=data, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["message"] == "Log in to do this."
    assert (await db.execute(select(Comment))).first() is None


async def test_a_logged_in_user_comments_as_themselves(
    db: AsyncSession, client: Client, add_posts: AddPosts, add_user: AddUser, log_in: LogIn
) -> None:
    await add_posts(1)
    ken = await add_user("ken")
    await log_in("ken")
    page = await (await client.get("/blog/post-1")).text()
    assert "Commenting as <strong>ken</strong>." in page
    # No name field: the comment is the logged-in user's.
    assert 'name="author"' not in page
    resp = await client.post(
        "/blog/post-1/comments",
        data={
            "body": "Nice post.\r\n\r\nThanks!",
            "author": "someone else",
            "csrf_token": form_token(page),
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    comment = (await db.execute(select(Comment))).scalar_one()
    assert (comment.author_id, comment.body) == (ken.id, "Nice post.\n\nThanks!")
    assert resp.headers["Location"] == f"/blog/post-1#comment-{comment.id}"

    html = await (await client.get("/blog/post-1")).text()
    assert "1 comment<" in html.replace("\n", "").replace("  ", "")
    assert f'<article class="comment" id="comment-{comment.id}">' in html
    assert "<strong>ken</strong>" in html
    assert "<p>Thanks!</p>" in html
