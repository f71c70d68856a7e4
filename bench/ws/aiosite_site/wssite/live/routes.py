from aiosite import Routes

from . import views

routes = Routes()

routes.websocket("/subscribe", views.subscribe, name="subscribe")
routes.websocket("/publish", views.publish, name="publish")
# For the harness: readiness, subscribers in this process, a garbage collection.
routes.get("/ready", views.ready, name="ready")
routes.get("/stats", views.stats, name="stats")
routes.get("/gc", views.collect, name="gc")
