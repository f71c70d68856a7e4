"""The handler wrapper ``aiosite.budgets``: a route's timeout and concurrency, on the
routes that have a budget (their own, or the site's defaults) and no others."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from aiosite.budgets.config import BudgetSettings
from aiosite.budgets.decorator import BUDGET, SITE_DEFAULT, Budget, FromSite
from aiosite.budgets.trips import Trips
from aiosite.handlers import handler_layers, route_label
from aiosite.keys import BUDGET_DEADLINE, NO_SITE_BUDGET, PROBE, WEBSOCKET

# The markers of the routes the site's defaults leave alone: websockets, the health and
# metrics endpoints, the static files.
_EXEMPT: Final = (WEBSOCKET, PROBE, NO_SITE_BUDGET)
# What a View route's methods may be; any other method has no budget of its own.
_METHODS: Final = tuple(sorted(hdrs.METH_ALL))
# Routes planned at most (a router has far fewer; this only bounds a surprise).
_MAX_PLANS: Final = 10_000


class Gate:
    """The limits of one route (one method of a view's, when the method has a budget
    of its own) and the requests running in it, in this process."""

    __slots__ = ("active", "concurrency", "route", "timeout")

    def __init__(self, route: str, timeout: float | None, concurrency: int | None) -> None:
        self.route = route
        self.timeout = timeout
        self.concurrency = concurrency
        self.active = 0


# What a route needs: its gate, a view's gates by method, or nothing (no budget).
Plan = Gate | dict[str, Gate | None] | None
_UNPLANNED: Final[Any] = object()


class BudgetGuard:
    """Runs a route's handler within its budget. Planned once per route (when the site
    settles its hooks, else at the route's first request): a request costs a dict
    lookup, a counter and, with a timeout, one timer."""

    def __init__(self, config: BudgetSettings, trips: Trips) -> None:
        self.timeout = config.timeout
        self.concurrency = config.concurrency
        self.retry_after = str(config.retry_after)
        self.trips = trips
        self._plans: dict[web.AbstractRoute, Plan] = {}
        # Shared by the routes of one handler (GET and its HEAD) with the same budget.
        self._gates: dict[tuple[object, object, object], Gate] = {}

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        gate = self._plans.get(route, _UNPLANNED)
        if type(gate) is not Gate:
            gate = self._gate_of(route, request.method, gate)
            if gate is None:
                return await handler(request)
        limit = gate.concurrency
        if limit is not None and gate.active >= limit:
            raise self._too_busy(gate, limit)
        gate.active += 1
        try:
            seconds = gate.timeout
            if seconds is None:
                return await handler(request)
            deadline = asyncio.timeout(seconds)
            try:
                async with deadline:
                    request[BUDGET_DEADLINE] = deadline
                    return await handler(request)
            except TimeoutError:
                if not deadline.expired():  # the handler's own, not the budget's
                    raise
                raise self._timed_out(gate, seconds) from None
        finally:
            gate.active -= 1

    def applies(self, route: web.AbstractRoute) -> bool:
        """The ``routes=`` filter: whether ``route`` has a budget at all."""
        return self._plan(route) is not None

    # -- planning -----------------------------------------------------------------------

    def _gate_of(self, route: web.AbstractRoute, method: str, plan: Any) -> Gate | None:
        if plan is _UNPLANNED:
            plan = self._plan(route)
        if plan is None or isinstance(plan, Gate):
            return plan
        found: Gate | None = plan.get(method)
        return found

    def _plan(self, route: web.AbstractRoute) -> Plan:
        try:
            return self._plans[route]
        except KeyError:
            pass
        plan: Plan
        if _view_class(route.handler) is not None:
            by_method = {method: self._gate(route, method) for method in _METHODS}
            plan = by_method if any(by_method.values()) else None
        else:
            plan = self._gate(route, route.method)
        if len(self._plans) < _MAX_PLANS:
            self._plans[route] = plan
        return plan

    def _gate(self, route: web.AbstractRoute, method: str) -> Gate | None:
        # Field by field, the outermost budget that sets it (a view's method before its
        # class); the site's default for the rest.
        timeout: float | FromSite | None = SITE_DEFAULT
        concurrency: int | FromSite | None = SITE_DEFAULT
        owners: list[int] = []  # the budgets that set something, by identity
        exempt = False  # from the site's defaults
        innermost: object = None
        for layer in handler_layers(route.handler, method):
            if layer is None:  # a view without this method
                continue
            own = getattr(layer, BUDGET, None)
            if isinstance(own, Budget) and id(own) not in owners:
                owners.append(id(own))
                if timeout is SITE_DEFAULT:
                    timeout = own.timeout
                if concurrency is SITE_DEFAULT:
                    concurrency = own.concurrency
            exempt = exempt or any(getattr(layer, marker, False) for marker in _EXEMPT)
            innermost = layer
        # A socket's handler runs as long as the socket is open: the site's defaults
        # would cut it off, or cap the sockets of a route. A load balancer's probe shed
        # under load would take a busy but healthy process out of service.
        if timeout is SITE_DEFAULT:
            timeout = None if exempt else self.timeout
        if concurrency is SITE_DEFAULT:
            concurrency = None if exempt else self.concurrency
        if timeout is None and concurrency is None:
            return None
        key = (route.resource, innermost, tuple(owners))
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = Gate(route_label(route), timeout, concurrency)
            if timeout is not None:
                self.trips.expect(gate.route, "timeout")
            if concurrency is not None:
                self.trips.expect(gate.route, "concurrency")
        return gate

    # -- trips --------------------------------------------------------------------------

    def _too_busy(self, gate: Gate, limit: int) -> web.HTTPServiceUnavailable:
        self.trips.trip(gate.route, "concurrency", f"limit of {limit} reached (answered 503)")
        wait = self.retry_after
        unit = "second" if wait == "1" else "seconds"
        return web.HTTPServiceUnavailable(
            text=f"This page is busy: it serves {limit} requests at a time. "
            f"Try again in {wait} {unit}.",
            headers={hdrs.RETRY_AFTER: wait},
        )

    def _timed_out(self, gate: Gate, seconds: float) -> web.HTTPGatewayTimeout:
        self.trips.trip(gate.route, "timeout", f"of {seconds:g} s passed (answered 504)")
        unit = "second" if seconds == 1 else "seconds"
        return web.HTTPGatewayTimeout(
            text=f"This page took too long: it has {seconds:g} {unit} to answer. Try again later."
        )


def _view_class(handler: object) -> type[web.View] | None:
    for layer in handler_layers(handler, hdrs.METH_GET):
        if isinstance(layer, type) and issubclass(layer, web.View):
            return layer
    return None
