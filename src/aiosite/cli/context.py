"""What every command shares: where the project is and which environment to load."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from aiosite.apps import ensure_importable
from aiosite.exceptions import CommandError
from aiosite.settings import Settings, find_project_dir
from aiosite.site import load_settings


@dataclass
class CliState:
    project: Path | None = None
    env: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def project_dir(self) -> Path:
        if self.project is not None:
            path = self.project.resolve()
            if not (path / "config" / "default.yaml").is_file():
                raise CommandError(f"{path} is not an aiosite project (no config/default.yaml)")
            return path
        found = find_project_dir()
        if found is None:
            raise CommandError(
                "not inside an aiosite project (no config/default.yaml here or above); "
                "cd into one, pass --project PATH, or create one with `aiosite new NAME`"
            )
        return found

    def settings(self) -> Settings:
        if self._settings is None:
            project_dir = self.project_dir()
            ensure_importable(project_dir)
            self._settings = load_settings(project_dir, self.env)
        return self._settings


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    resolved = path.resolve()
    try:
        relative = resolved.relative_to(Path.cwd().resolve())
    except ValueError:
        return str(path)
    return str(relative) if str(relative) != "." else os.curdir
