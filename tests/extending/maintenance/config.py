"""The extension's settings section, ``maintenance:`` in the project's YAML files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from aiosite import DeployProblem, Section


class MaintenanceSettings(Section):
    # The file whose presence puts the site in maintenance, relative to the project.
    flag_file: Path = Path("var/maintenance")
    message: str = "The site is down for maintenance; please come back shortly."
    # Seconds a client is told to wait (Retry-After).
    retry_after: int = Field(default=120, ge=1)
    # Paths still served during maintenance.
    allow_paths: list[str] = Field(default_factory=lambda: ["/static/", "/maintenance/"])
    # How often the site looks for the flag file, in seconds.
    poll_seconds: float = Field(default=1.0, gt=0)

    def deploy_problems(self) -> Iterator[DeployProblem]:
        if self.retry_after > 3600:
            yield (
                "warning",
                f"maintenance.retry_after: {self.retry_after} s, so clients and crawlers stay "
                "away for over an hour after a short maintenance: use a few minutes",
            )
