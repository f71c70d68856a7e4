"""The home app: the site's front page, mounted at the site root."""

from aiosite import App

app = App("home", prefix="")
