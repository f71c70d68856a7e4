"""The API's routes: ``/api/posts``, ``/api/posts/{id}``, ``/api/stats`` and
``/api/dashboard``."""

from aiosite import Routes

from . import views

routes = Routes()
routes.get("/posts", views.posts, name="posts")
routes.get("/stats", views.stats, name="stats")
routes.get("/dashboard", views.dashboard, name="dashboard")
# Only digits match: /api/posts/abc is a JSON 404 like any unknown address under /api.
# At most 9 digits: every such id fits a 32-bit integer column; a longer one is a 404.
routes.get(r"/posts/{id:\d{1,9}}", views.post, name="post")
