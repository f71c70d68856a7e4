"""The site's named services: each one's settings resolved against the site's defaults,
its retry policy and its circuit breaker, and the fakes tests put in place of some."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

import aiohttp
from aiohttp import ClientMiddlewareType, web
from yarl import URL

from aiosite.exceptions import ImproperlyConfigured
from aiosite.http.breaker import Breakers
from aiosite.http.config import BreakerSettings, HttpSettings, ServiceSettings
from aiosite.http.guard import own_headers_stay_home
from aiosite.http.retry import RetryPolicy

_DOT_SEGMENTS = frozenset({".", ".."})


@dataclass(frozen=True, slots=True)
class Upstream:
    """One service as calls use it: where it is, and how calls to it are bounded."""

    name: str
    base_url: URL
    timeout: aiohttp.ClientTimeout
    # The service's own headers: an API key, never shown in a repr (a debug page).
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    retry: RetryPolicy | None  # None: no retries
    breaker: BreakerSettings | None  # None: no circuit breaker
    # The client middlewares of each call: the site's (the test guard), then the one
    # that keeps the service's headers to its origin.
    middlewares: tuple[ClientMiddlewareType, ...] = field(repr=False)

    def url(self, path: str) -> URL:
        """``path`` under the base URL: ``/v1/today`` of ``https://api.example.com/w``
        is ``https://api.example.com/w/v1/today``.

        ValueError, before anything is sent, for a whole URL, a path with a query or
        fragment (``?``, ``#``: pass ``params=``), or a dot segment (``..``, ``%2e%2e``)
        that could lead out of the base URL's path. Quote a value put into a path:
        ``f"/users/{urllib.parse.quote(name, safe='')}"``.
        """
        if "?" in path or "#" in path:
            raise ValueError(
                f"service {self.name!r}: {path!r} has a query or fragment; pass query "
                "parameters as params=..., and quote a value put into a path "
                "(urllib.parse.quote(value, safe=''))"
            )
        if URL(path).is_absolute():
            raise ValueError(
                f"service {self.name!r}: {path!r} is a whole URL; pass a path under the "
                f"service's base URL ({self.base_url}), or use http_client() for any URL"
            )
        # Decoded, and with backslashes as slashes: what a lenient server may make of it.
        segments = unquote(path).replace("\\", "/").split("/")
        if _DOT_SEGMENTS.intersection(segments):
            raise ValueError(
                f"service {self.name!r}: {path!r} has a dot segment ('.' or '..'), which "
                f"could lead out of the service's base URL ({self.base_url}); quote a "
                "value put into a path (urllib.parse.quote(value, safe=''))"
            )
        return URL(str(self.base_url).rstrip("/") + "/" + path.lstrip("/"))


class Services:
    """The site's services by name (``SERVICES``), made from the ``http:`` settings."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._upstreams: dict[str, Upstream] = {}
        self._fakes: dict[str, list[URL]] = {}
        self._breakers: Breakers | None = None
        # The site client's middlewares, which a service's calls run with its own.
        self.middlewares: tuple[ClientMiddlewareType, ...] = ()

    @property
    def names(self) -> list[str]:
        """The configured services' names, sorted."""
        return sorted(self.settings.services)

    def open(self, middlewares: tuple[ClientMiddlewareType, ...] = ()) -> None:
        """Resolve every service when the site starts, so that the libraries retries
        and breakers need are imported then, not during a request. ``middlewares`` are
        the site client's."""
        self.middlewares = middlewares
        self._upstreams.clear()
        upstreams = [self.get(name) for name in self.settings.services]
        if self._breakers is None and any(u.breaker is not None for u in upstreams):
            self._breakers = Breakers()

    def get(self, name: str) -> Upstream:
        """The service ``name``; ImproperlyConfigured naming the ones there are."""
        upstream = self._upstreams.get(name)
        if upstream is None:
            upstream = self._upstreams[name] = self._resolve(name)
        return upstream

    @property
    def breakers(self) -> Breakers:
        if self._breakers is None:
            self._breakers = Breakers()
        return self._breakers

    def configured(self) -> Iterator[tuple[str, str]]:
        """(name, base URL) of each configured service."""
        for name, service in self.settings.services.items():
            yield name, service.base_url

    def add_fake(self, name: str, base_url: URL) -> None:
        """Send the calls to ``name`` to the server at ``base_url`` (an origin) until
        ``remove_fake`` (tests)."""
        self._fakes.setdefault(name, []).append(base_url)
        self._upstreams.pop(name, None)

    def remove_fake(self, name: str, base_url: URL) -> None:
        fakes = self._fakes.get(name, [])
        if base_url in fakes:
            fakes.remove(base_url)
        if not fakes:
            self._fakes.pop(name, None)
        self._upstreams.pop(name, None)

    def _resolve(self, name: str) -> Upstream:
        site = self.settings
        service = site.services.get(name)
        fakes = self._fakes.get(name)
        if service is None:
            if not fakes:
                raise ImproperlyConfigured(_unknown(name, self.names))
            # A fake of a service the test settings do not list (its real address
            # is in production.yaml): the site's defaults.
            service = ServiceSettings(base_url=str(fakes[-1]))
        base_url = URL(service.base_url)
        if fakes:
            # The fake gets the paths the real service would (its base URL's path too).
            base_url = fakes[-1].with_path(base_url.path)
        timeout = aiohttp.ClientTimeout(
            total=service.timeout.total or site.timeout.total,
            sock_connect=service.timeout.connect or site.timeout.connect,
        )
        retries = site.retries if service.retries is None else service.retries
        headers = tuple(
            (header, value.get_secret_value()) for header, value in service.headers.items()
        )
        middlewares = self.middlewares
        if headers:
            names = [header for header, _ in headers]
            middlewares = (*middlewares, own_headers_stay_home(base_url, names))
        return Upstream(
            name=name,
            base_url=base_url,
            timeout=timeout,
            headers=headers,
            retry=RetryPolicy(retries, service.backoff_or(site.backoff)) if retries else None,
            breaker=service.breaker_or(site.circuit_breaker),
            middlewares=middlewares,
        )


def _unknown(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    have = ", ".join(repr(n) for n in known) or "none"
    return (
        f"http.services: there is no service {name!r}{hint} (the site has: {have}); "
        "declare it in config/default.yaml under http: services:"
    )


SERVICES: web.AppKey[Services] = web.AppKey("aiosite.http_services", Services)
