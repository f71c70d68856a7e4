"""The ``budgets:`` settings section: the budget of every route that sets none itself."""

from __future__ import annotations

from pydantic import Field

from aiosite.settings import Section


class BudgetSettings(Section):
    """Site-wide budgets (docs/budgets.md). A route's ``@budget(...)`` overrides them
    field by field; websocket routes take none of them."""

    # Seconds a handler may run before the request is answered 504; null: no limit.
    timeout: float | None = Field(default=None, gt=0)
    # Requests one process runs at once per route; the next get 503 at once; null: any.
    concurrency: int | None = Field(default=None, ge=1)
    # Seconds a client refused for concurrency is told to wait (Retry-After).
    retry_after: int = Field(default=1, ge=1)
