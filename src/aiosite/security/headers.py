"""Security headers, added to every response the core returns.

Built once at setup into tuples, because the hook runs on every response, the
benchmarks' plaintext and JSON routes included: a response pays a few ``setdefault``
calls (a header the handler set itself wins) and, for HTML, one header prefix check.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from aiosite.hooks import ResponseHook
from aiosite.security.forwarded import ProxyTrust, forwarded_https
from aiosite.settings import Settings

HTML = "text/html"
# aiohttp-debugtoolbar names its routes "debugtoolbar.<view>"; its pages rely on inline
# scripts, so they get no policy.
_TOOLBAR_ROUTE = "debugtoolbar."

# Names are aiohttp's istr constants: multidict skips case-folding them on each call.
Headers = tuple[tuple[str, str], ...]


def hsts_value(seconds: int, *, subdomains: bool, preload: bool) -> str:
    value = f"max-age={seconds}"
    if subdomains:
        value += "; includeSubDomains"
    if preload:
        value += "; preload"
    return value


def header_sets(settings: Settings) -> tuple[Headers, Headers, Headers]:
    """The headers for every response, for HTML responses, and for HTTPS responses."""
    security = settings.security
    # Server: instead of aiohttp's, which names its version and Python's.
    every: list[tuple[str, str]] = [
        (hdrs.SERVER, security.server_header),
        (hdrs.X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
    if security.referrer_policy:
        every.append((hdrs.REFERRER_POLICY, security.referrer_policy))
    html: list[tuple[str, str]] = []
    if security.content_security_policy:
        # In debug mode the browser reports what the policy would block (in its console)
        # without blocking it: the debug pages' inline scripts keep working, and a page
        # the policy would break in production still shows up during development.
        name = (
            hdrs.CONTENT_SECURITY_POLICY_REPORT_ONLY
            if settings.debug.enabled
            else hdrs.CONTENT_SECURITY_POLICY
        )
        html.append((name, security.content_security_policy))
    if security.frame_options:
        html.append((hdrs.X_FRAME_OPTIONS, security.frame_options))
    https: list[tuple[str, str]] = []
    if security.hsts_seconds:
        value = hsts_value(
            security.hsts_seconds,
            subdomains=security.hsts_include_subdomains,
            preload=security.hsts_preload,
        )
        https.append((hdrs.STRICT_TRANSPORT_SECURITY, value))
    return tuple(every), tuple(html), tuple(https)


def headers_hook(settings: Settings) -> ResponseHook:
    """The response hook that adds the headers ``settings.security`` asks for."""
    every, html, https = header_sets(settings)
    proxies = ProxyTrust(settings.security)
    trust_proxy = proxies.enabled
    debug = settings.debug.enabled
    content_type_header = hdrs.CONTENT_TYPE

    # One frame per response: the HTML and HTTPS tests are inlined (each helper call
    # cost about as much as the headers it guards), and the raw Content-Type is read,
    # since response.content_type parses it.
    def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        for name, value in every:
            headers.setdefault(name, value)
        if html:
            content_type = headers.get(content_type_header)
            if (
                content_type is not None
                and content_type[:9].lower() == HTML
                and not (debug and _is_toolbar(request))
            ):
                for name, value in html:
                    headers.setdefault(name, value)
        if https and (
            request.secure or (trust_proxy and forwarded_https(request) and proxies.trusts(request))
        ):
            for name, value in https:
                headers.setdefault(name, value)

    return add_security_headers


def _is_toolbar(request: web.Request) -> bool:
    name = request.match_info.route.name
    return name is not None and name.startswith(_TOOLBAR_ROUTE)
