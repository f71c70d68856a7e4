"""Clients of the site's backing services (Redis), made one way with the bounds the
settings give, for every battery that needs one: sessions, cache, broadcast, rate limits.

Nothing here is a battery: a battery makes its client with a factory of this package in
its own ``cleanup_ctx``, so a site that uses no such service never imports its client.
"""
