"""The JSON API: published posts for other programs, at /api/.

``api=True`` makes every error under /api JSON (``{"error": {"status", "reason",
"message"}}``), including a 404 for an address no route matches.
"""

from aiosite import App

app = App("api", prefix="/api", api=True)
