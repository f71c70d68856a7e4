"""The API's routes: ``/api/posts`` and ``/api/posts/{id}``, named ``api:posts``, ``api:post``."""

from aiosite import Routes

from . import views

routes = Routes()
routes.get("/posts", views.posts, name="posts")
# Only digits match: /api/posts/abc is a JSON 404 like any unknown address under /api.
routes.get(r"/posts/{id:\d+}", views.post, name="post")
