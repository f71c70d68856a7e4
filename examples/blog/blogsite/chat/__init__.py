"""The chat app: rooms where logged-in users talk live, mounted at /chat/.

A room's page loads the last messages and then the new ones over a websocket; the
messages are stored in the database and travel between the site's processes through
the broadcast hub (``chat:<room>``), so two visitors served by different workers still
talk to each other.
"""

from aiosite import App

app = App("chat", prefix="/chat")
