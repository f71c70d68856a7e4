"""Peer implementations of the TechEmpower tests (aiohttp, FastAPI, Django)."""
