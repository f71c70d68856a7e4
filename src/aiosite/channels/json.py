"""Messages travel as JSON: orjson when installed (a default dependency)."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a default dependency

    def dumps(data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode()

    def loads(payload: bytes | str) -> Any:
        return json.loads(payload)

else:

    def dumps(data: Any) -> bytes:
        return orjson.dumps(data)

    def loads(payload: bytes | str) -> Any:
        return orjson.loads(payload)
