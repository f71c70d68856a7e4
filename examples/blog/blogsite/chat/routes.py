"""The chat's routes, named ``chat:<name>``: ``url('chat:room', room='general')``.

A room's name is checked by its route: ``/chat/Not_A_Room`` matches nothing and is a
404, its websocket too.
"""

from aiosite import Routes

from . import views
from .messages import ROOM_PATTERN

routes = Routes()
routes.get("/", views.index, name="index")
routes.get(f"/{{room:{ROOM_PATTERN}}}", views.room, name="room")
routes.websocket(f"/{{room:{ROOM_PATTERN}}}/ws", views.socket, name="socket")
