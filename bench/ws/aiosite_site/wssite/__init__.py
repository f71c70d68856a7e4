"""The websocket broadcast benchmark project (bench/ws)."""
