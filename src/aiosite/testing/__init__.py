"""Test helpers; the pytest plugin (fixtures ``site``, ``client``, ``db``) is ``plugin``."""

from aiosite.testing.csrf import csrf_headers as csrf_headers
from aiosite.testing.csrf import csrf_token as csrf_token
from aiosite.testing.upstreams import FakeUpstream as FakeUpstream
from aiosite.testing.upstreams import fake_upstream as fake_upstream

__all__ = ["FakeUpstream", "csrf_headers", "csrf_token", "fake_upstream"]
