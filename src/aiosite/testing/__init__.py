"""Test helpers; the pytest plugin (fixtures ``site``, ``client``, ``db``) is ``plugin``."""

from aiosite.testing.csrf import csrf_headers as csrf_headers
from aiosite.testing.csrf import csrf_token as csrf_token

__all__ = ["csrf_headers", "csrf_token"]
