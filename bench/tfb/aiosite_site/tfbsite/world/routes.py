"""TechEmpower's tests: /plaintext, /json, the database tests on the fast data path, and
the same database tests under /orm on the ORM session path."""

from aiosite import Routes

from . import views

routes = Routes()

routes.get("/plaintext", views.plaintext, name="plaintext")
routes.get("/json", views.json, name="json")

routes.get("/db", views.single_query, name="db")
routes.get("/queries", views.multiple_queries, name="queries")
routes.get("/fortunes", views.fortunes, name="fortunes")
routes.get("/updates", views.updates, name="updates")

routes.get("/orm/db", views.orm_single_query, name="orm-db")
routes.get("/orm/queries", views.orm_multiple_queries, name="orm-queries")
routes.get("/orm/fortunes", views.orm_fortunes, name="orm-fortunes")
routes.get("/orm/updates", views.orm_updates, name="orm-updates")
