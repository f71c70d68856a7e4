"""aiosite's pytest plugin (installed with aiosite) provides the fixtures:

- ``site``: this project's site, built with config/default.yaml + config/test.yaml;
- ``client``: an aiohttp test client on it (``await client.get("/")``).
"""
