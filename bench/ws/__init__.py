"""Websocket broadcast benchmark: aiosite's hub against a hand-written aiohttp peer
(run with cwd=bench/: ``python -m ws.run``)."""
