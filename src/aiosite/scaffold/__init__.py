"""The files ``aiosite new`` and ``aiosite startapp`` write, and the code that writes them.

Templates live under ``files/`` and are rendered by plain token replacement (``@@NAME@@``),
never Jinja: the scaffold itself contains Jinja templates that must come out untouched.
"""

from aiosite.scaffold.apps_yaml import add_app as add_app
from aiosite.scaffold.generate import create_app as create_app
from aiosite.scaffold.generate import create_migrations as create_migrations
from aiosite.scaffold.generate import create_project as create_project
from aiosite.scaffold.names import check_app_name as check_app_name
from aiosite.scaffold.names import check_project_name as check_project_name

__all__ = [
    "add_app",
    "check_app_name",
    "check_project_name",
    "create_app",
    "create_migrations",
    "create_project",
]
