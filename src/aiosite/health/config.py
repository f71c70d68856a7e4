"""The ``health:`` settings section."""

from __future__ import annotations

from pydantic import Field, field_validator

from aiosite.settings import Section


class HealthSettings(Section):
    """The liveness and readiness endpoints a load balancer or an orchestrator probes
    (docs/health-and-metrics.md)."""

    enabled: bool = True
    # 200 "ok" while the process serves requests; does no I/O.
    healthz_path: str = "/healthz"
    # 200 once every readiness check passes (database, migrations, Redis...), else 503.
    readyz_path: str = "/readyz"
    # Seconds a readiness check may take before it counts as failed (a check may set
    # its own).
    check_timeout: float = Field(default=2.0, gt=0)
    # Seconds a finished run of the checks answers further probes (probes during a run
    # always share it); 0: every probe after a run starts a new one.
    cache_seconds: float = Field(default=1.0, ge=0)

    @field_validator("healthz_path", "readyz_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"a path starting with '/', e.g. '/{value}'")
        return value
