"""aiosite: a batteries-included, Django-style async web framework on aiohttp.

The curated public API; everything else is an implementation detail.
"""

from aiosite.apps import App as App
from aiosite.apps import AppRegistry as AppRegistry
from aiosite.apps import apps_of as apps_of
from aiosite.apps import command_settings as command_settings
from aiosite.apps import load_apps as load_apps
from aiosite.db.engine import DATABASE as DATABASE
from aiosite.db.engine import Database as Database
from aiosite.db.engine import database_of as database_of
from aiosite.db.errors import database_failed as database_failed
from aiosite.db.fast_path import Prepared as Prepared
from aiosite.db.models import Model as Model
from aiosite.db.models import Timestamped as Timestamped
from aiosite.db.models import UtcDateTime as UtcDateTime
from aiosite.db.models import models_of as models_of
from aiosite.db.queries import Page as Page
from aiosite.db.queries import get_or_404 as get_or_404
from aiosite.db.queries import paginate as paginate
from aiosite.db.transactions import DB_SESSION as DB_SESSION
from aiosite.db.transactions import db_session as db_session
from aiosite.db.transactions import fast_path as fast_path
from aiosite.db.transactions import session_scope as session_scope
from aiosite.exceptions import AiositeError as AiositeError
from aiosite.exceptions import CommandError as CommandError
from aiosite.exceptions import DatabaseUnavailable as DatabaseUnavailable
from aiosite.exceptions import ImproperlyConfigured as ImproperlyConfigured
from aiosite.exceptions import MissingDependency as MissingDependency
from aiosite.exceptions import NoReverseMatch as NoReverseMatch
from aiosite.exceptions import SessionStoreUnavailable as SessionStoreUnavailable
from aiosite.forms import read_form as read_form
from aiosite.handlers import request_of as request_of
from aiosite.hooks import ExceptionHandler as ExceptionHandler
from aiosite.hooks import HandlerWrapper as HandlerWrapper
from aiosite.hooks import Hooks as Hooks
from aiosite.hooks import RequestFinalizer as RequestFinalizer
from aiosite.hooks import RequestHook as RequestHook
from aiosite.hooks import ResponseHook as ResponseHook
from aiosite.hooks import add_request_finalizer as add_request_finalizer
from aiosite.hooks import hooks_of as hooks_of
from aiosite.keys import REQUEST_ID as REQUEST_ID
from aiosite.keys import SETTINGS as SETTINGS
from aiosite.keys import settings_of as settings_of
from aiosite.ratelimit import RateLimitKey as RateLimitKey
from aiosite.ratelimit import RateLimitResult as RateLimitResult
from aiosite.ratelimit import by_address as by_address
from aiosite.ratelimit import check_rate_limit as check_rate_limit
from aiosite.ratelimit import hit_rate_limit as hit_rate_limit
from aiosite.ratelimit import rate_limit as rate_limit
from aiosite.security import client_address as client_address
from aiosite.security import csrf_exempt as csrf_exempt
from aiosite.security import get_csrf_token as get_csrf_token
from aiosite.security import is_secure as is_secure
from aiosite.security import max_body_size as max_body_size
from aiosite.security import rotate_csrf_token as rotate_csrf_token
from aiosite.sessions import flash as flash
from aiosite.sessions import get_flashed_messages as get_flashed_messages
from aiosite.sessions import get_session as get_session
from aiosite.sessions import rotate_session as rotate_session
from aiosite.sessions import session_store_failed as session_store_failed
from aiosite.settings import DeployProblem as DeployProblem
from aiosite.settings import Section as Section
from aiosite.settings import Settings as Settings
from aiosite.site import create_site as create_site
from aiosite.site import load_settings as load_settings
from aiosite.site import load_site as load_site
from aiosite.web.errors import wants_json as wants_json
from aiosite.web.responses import json_response as json_response
from aiosite.web.routing import Routes as Routes
from aiosite.web.static import static_url as static_url
from aiosite.web.templates import render as render
from aiosite.web.templates import render_string as render_string
from aiosite.web.templates import template as template
from aiosite.web.urls import url_for as url_for

__version__ = "0.1.0"

__all__ = [
    "DATABASE",
    "DB_SESSION",
    "REQUEST_ID",
    "SETTINGS",
    "AiositeError",
    "App",
    "AppRegistry",
    "CommandError",
    "Database",
    "DatabaseUnavailable",
    "DeployProblem",
    "ExceptionHandler",
    "HandlerWrapper",
    "Hooks",
    "ImproperlyConfigured",
    "MissingDependency",
    "Model",
    "NoReverseMatch",
    "Page",
    "Prepared",
    "RateLimitKey",
    "RateLimitResult",
    "RequestFinalizer",
    "RequestHook",
    "ResponseHook",
    "Routes",
    "Section",
    "SessionStoreUnavailable",
    "Settings",
    "Timestamped",
    "UtcDateTime",
    "__version__",
    "add_request_finalizer",
    "apps_of",
    "by_address",
    "check_rate_limit",
    "client_address",
    "command_settings",
    "create_site",
    "csrf_exempt",
    "database_failed",
    "database_of",
    "db_session",
    "fast_path",
    "flash",
    "get_csrf_token",
    "get_flashed_messages",
    "get_or_404",
    "get_session",
    "hit_rate_limit",
    "hooks_of",
    "is_secure",
    "json_response",
    "load_apps",
    "load_settings",
    "load_site",
    "max_body_size",
    "models_of",
    "paginate",
    "rate_limit",
    "read_form",
    "render",
    "render_string",
    "request_of",
    "rotate_csrf_token",
    "rotate_session",
    "session_scope",
    "session_store_failed",
    "settings_of",
    "static_url",
    "template",
    "url_for",
    "wants_json",
]
