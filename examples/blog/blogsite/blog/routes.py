"""The blog app's routes, named ``blog:<name>``: ``url('blog:detail', slug=post.slug)``.

Fixed paths (``/new``) win over ``/{slug}`` whatever the order, as in aiohttp; the post
form refuses the slug ``new`` for that reason.
"""

from aiosite import Routes

from . import attachments, views

routes = Routes()
routes.get("/", views.index, name="index")
routes.view("/new", views.NewPost, name="new")
routes.get("/tags/{slug}", views.tag, name="tag")
# An id too large for the column is no attachment: get_or_404 answers 404, not a 500.
routes.get(r"/attachments/{id:\d+}", attachments.attachment, name="attachment")
routes.get("/{slug}", views.detail, name="detail")
routes.post("/{slug}/comments", views.comment, name="comment")
routes.view("/{slug}/edit", views.EditPost, name="edit")
