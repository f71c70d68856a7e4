"""Who may read ``/metrics``: the clients ``metrics.allow`` names."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from aiosite.keys import CLIENT_ADDRESS
from aiosite.networks import Network, address_in

# Decisions kept per client address; a client cycling addresses cannot grow it past this.
_CACHE_SIZE = 1024


class Access:
    """Whether a request's client may read the metrics, by its address (as the
    security battery sees it: a trusted proxy's X-Forwarded-For, else the peer's)."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)
        self._decisions: dict[str, bool] = {}

    def allows(self, request: web.Request) -> bool:
        address_of = request.config_dict.get(CLIENT_ADDRESS)
        address = address_of(request) if address_of is not None else request.remote
        if not address:  # unknown (a unix socket peer without a trusted proxy's header)
            return False
        allowed = self._decisions.get(address)
        if allowed is None:
            allowed = address_in(address, self.networks)
            if len(self._decisions) >= _CACHE_SIZE:
                self._decisions.clear()
            self._decisions[address] = allowed
        return allowed
