"""The home app's routes, named ``home:<name>``: ``url('home:about')`` in a template.

A route can also be declared on the handler itself:

    @routes.get("/", name="index")
    async def index(request: web.Request) -> web.Response: ...
"""

from aiosite import Routes

from . import views

routes = Routes()
routes.get("/", views.index, name="index")
routes.get("/about", views.about, name="about")
# Site-wide rather than the blog's: every page's banner (static/live.js) listens here.
routes.get("/events/posts", views.post_events, name="post_events")
