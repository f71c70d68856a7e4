from aiosite.settings import Section


class LiveSettings(Section):
    # The hub channel the room's messages travel on.
    channel: str = "bench"
