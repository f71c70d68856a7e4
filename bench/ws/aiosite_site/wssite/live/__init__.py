"""A broadcast room: subscribers on one websocket route, a publisher on another.

The channel is a setting (``live.channel``, AIOSITE_LIVE__CHANNEL) so that each run has
one of its own on the shared Redis and PostgreSQL.
"""

from aiosite import App

from .config import LiveSettings

app = App("live", prefix="", settings=LiveSettings)
