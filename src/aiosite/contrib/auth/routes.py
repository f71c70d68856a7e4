"""The auth pages under /auth: ``auth:login``, ``auth:logout``, ``auth:register`` and
``auth:password_change``."""

from aiosite import Routes

from . import views

routes = Routes()
routes.view("/login", views.LoginView, name="login")
routes.post("/logout", views.logout_view, name="logout")
routes.view("/register", views.RegisterView, name="register")
routes.view("/password", views.PasswordChangeView, name="password_change")
