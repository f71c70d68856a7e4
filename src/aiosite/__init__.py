"""aiosite: a batteries-included, Django-style async web framework on aiohttp.

The curated public API; everything else is an implementation detail.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiosite.apps import App as App
    from aiosite.apps import AppRegistry as AppRegistry
    from aiosite.apps import apps_of as apps_of
    from aiosite.apps import command_settings as command_settings
    from aiosite.apps import load_apps as load_apps
    from aiosite.budgets import budget as budget
    from aiosite.channels import ChannelUnavailable as ChannelUnavailable
    from aiosite.channels import Hub as Hub
    from aiosite.channels import LiveCounts as LiveCounts
    from aiosite.channels import Message as Message
    from aiosite.channels import MessageTooLarge as MessageTooLarge
    from aiosite.channels import SiteEventStream as SiteEventStream
    from aiosite.channels import SiteWebSocket as SiteWebSocket
    from aiosite.channels import SubscriberTooSlow as SubscriberTooSlow
    from aiosite.channels import Subscription as Subscription
    from aiosite.channels import broadcast as broadcast
    from aiosite.channels import live_connections as live_connections
    from aiosite.channels import open_event_stream as open_event_stream
    from aiosite.channels import open_websocket as open_websocket
    from aiosite.channels import stream_channel as stream_channel
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
    from aiosite.db.transactions import run_transaction as run_transaction
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
    from aiosite.http import CircuitOpen as CircuitOpen
    from aiosite.http import Gathered as Gathered
    from aiosite.http import Service as Service
    from aiosite.http import UpstreamError as UpstreamError
    from aiosite.http import UpstreamResponse as UpstreamResponse
    from aiosite.http import UpstreamStatusError as UpstreamStatusError
    from aiosite.http import UpstreamTimeout as UpstreamTimeout
    from aiosite.http import UpstreamUnavailable as UpstreamUnavailable
    from aiosite.http import gather_upstreams as gather_upstreams
    from aiosite.http import http_client as http_client
    from aiosite.http import service as service
    from aiosite.keys import REQUEST_ID as REQUEST_ID
    from aiosite.keys import SETTINGS as SETTINGS
    from aiosite.keys import settings_of as settings_of
    from aiosite.probes import MetricSample as MetricSample
    from aiosite.probes import probes_of as probes_of
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

# Where each name of the public API lives. The names are imported on first use (PEP 562),
# so that `import aiosite` costs nothing and a site loads only the batteries it uses;
# type checkers read the imports above. A new name goes in all three places (the imports
# above, here and __all__): tests/test_lazy_imports.py checks that they agree.
_EXPORTS: dict[str, str] = {
    "App": "aiosite.apps",
    "AppRegistry": "aiosite.apps",
    "apps_of": "aiosite.apps",
    "command_settings": "aiosite.apps",
    "load_apps": "aiosite.apps",
    "budget": "aiosite.budgets",
    "ChannelUnavailable": "aiosite.channels",
    "Hub": "aiosite.channels",
    "LiveCounts": "aiosite.channels",
    "Message": "aiosite.channels",
    "MessageTooLarge": "aiosite.channels",
    "SiteEventStream": "aiosite.channels",
    "SiteWebSocket": "aiosite.channels",
    "SubscriberTooSlow": "aiosite.channels",
    "Subscription": "aiosite.channels",
    "broadcast": "aiosite.channels",
    "live_connections": "aiosite.channels",
    "open_event_stream": "aiosite.channels",
    "open_websocket": "aiosite.channels",
    "stream_channel": "aiosite.channels",
    "DATABASE": "aiosite.db.engine",
    "Database": "aiosite.db.engine",
    "database_of": "aiosite.db.engine",
    "database_failed": "aiosite.db.errors",
    "Prepared": "aiosite.db.fast_path",
    "Model": "aiosite.db.models",
    "Timestamped": "aiosite.db.models",
    "UtcDateTime": "aiosite.db.models",
    "models_of": "aiosite.db.models",
    "Page": "aiosite.db.queries",
    "get_or_404": "aiosite.db.queries",
    "paginate": "aiosite.db.queries",
    "DB_SESSION": "aiosite.db.transactions",
    "db_session": "aiosite.db.transactions",
    "fast_path": "aiosite.db.transactions",
    "run_transaction": "aiosite.db.transactions",
    "session_scope": "aiosite.db.transactions",
    "AiositeError": "aiosite.exceptions",
    "CommandError": "aiosite.exceptions",
    "DatabaseUnavailable": "aiosite.exceptions",
    "ImproperlyConfigured": "aiosite.exceptions",
    "MissingDependency": "aiosite.exceptions",
    "NoReverseMatch": "aiosite.exceptions",
    "SessionStoreUnavailable": "aiosite.exceptions",
    "read_form": "aiosite.forms",
    "request_of": "aiosite.handlers",
    "ExceptionHandler": "aiosite.hooks",
    "HandlerWrapper": "aiosite.hooks",
    "Hooks": "aiosite.hooks",
    "RequestFinalizer": "aiosite.hooks",
    "RequestHook": "aiosite.hooks",
    "ResponseHook": "aiosite.hooks",
    "add_request_finalizer": "aiosite.hooks",
    "hooks_of": "aiosite.hooks",
    "CircuitOpen": "aiosite.http",
    "Gathered": "aiosite.http",
    "Service": "aiosite.http",
    "UpstreamError": "aiosite.http",
    "UpstreamResponse": "aiosite.http",
    "UpstreamStatusError": "aiosite.http",
    "UpstreamTimeout": "aiosite.http",
    "UpstreamUnavailable": "aiosite.http",
    "gather_upstreams": "aiosite.http",
    "http_client": "aiosite.http",
    "service": "aiosite.http",
    "REQUEST_ID": "aiosite.keys",
    "SETTINGS": "aiosite.keys",
    "settings_of": "aiosite.keys",
    "MetricSample": "aiosite.probes",
    "probes_of": "aiosite.probes",
    "RateLimitKey": "aiosite.ratelimit",
    "RateLimitResult": "aiosite.ratelimit",
    "by_address": "aiosite.ratelimit",
    "check_rate_limit": "aiosite.ratelimit",
    "hit_rate_limit": "aiosite.ratelimit",
    "rate_limit": "aiosite.ratelimit",
    "client_address": "aiosite.security",
    "csrf_exempt": "aiosite.security",
    "get_csrf_token": "aiosite.security",
    "is_secure": "aiosite.security",
    "max_body_size": "aiosite.security",
    "rotate_csrf_token": "aiosite.security",
    "flash": "aiosite.sessions",
    "get_flashed_messages": "aiosite.sessions",
    "get_session": "aiosite.sessions",
    "rotate_session": "aiosite.sessions",
    "session_store_failed": "aiosite.sessions",
    "DeployProblem": "aiosite.settings",
    "Section": "aiosite.settings",
    "Settings": "aiosite.settings",
    "create_site": "aiosite.site",
    "load_settings": "aiosite.site",
    "load_site": "aiosite.site",
    "wants_json": "aiosite.web.errors",
    "json_response": "aiosite.web.responses",
    "Routes": "aiosite.web.routing",
    "static_url": "aiosite.web.static",
    "render": "aiosite.web.templates",
    "render_string": "aiosite.web.templates",
    "template": "aiosite.web.templates",
    "url_for": "aiosite.web.urls",
}

__version__ = "0.1.0"

__all__ = [
    "DATABASE",
    "DB_SESSION",
    "REQUEST_ID",
    "SETTINGS",
    "AiositeError",
    "App",
    "AppRegistry",
    "ChannelUnavailable",
    "CircuitOpen",
    "CommandError",
    "Database",
    "DatabaseUnavailable",
    "DeployProblem",
    "ExceptionHandler",
    "Gathered",
    "HandlerWrapper",
    "Hooks",
    "Hub",
    "ImproperlyConfigured",
    "LiveCounts",
    "Message",
    "MessageTooLarge",
    "MetricSample",
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
    "Service",
    "SessionStoreUnavailable",
    "Settings",
    "SiteEventStream",
    "SiteWebSocket",
    "SubscriberTooSlow",
    "Subscription",
    "Timestamped",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "UtcDateTime",
    "__version__",
    "add_request_finalizer",
    "apps_of",
    "broadcast",
    "budget",
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
    "gather_upstreams",
    "get_csrf_token",
    "get_flashed_messages",
    "get_or_404",
    "get_session",
    "hit_rate_limit",
    "hooks_of",
    "http_client",
    "is_secure",
    "json_response",
    "live_connections",
    "load_apps",
    "load_settings",
    "load_site",
    "max_body_size",
    "models_of",
    "open_event_stream",
    "open_websocket",
    "paginate",
    "probes_of",
    "rate_limit",
    "read_form",
    "render",
    "render_string",
    "request_of",
    "rotate_csrf_token",
    "rotate_session",
    "run_transaction",
    "service",
    "session_scope",
    "session_store_failed",
    "settings_of",
    "static_url",
    "stream_channel",
    "template",
    "url_for",
    "wants_json",
]

if not TYPE_CHECKING:  # for type checkers, a module __getattr__ would make any name valid

    def __getattr__(name: str) -> Any:
        try:
            module = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module 'aiosite' has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # once imported, a plain module attribute
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
