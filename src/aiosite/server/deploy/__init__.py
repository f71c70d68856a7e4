"""The files that run a site in production: nginx's site, a systemd unit, a supervisor
program (``aiosite deploy``; docs/deployment.md). Rendered from the site's settings."""

from __future__ import annotations

from aiosite.server.deploy.rendering import KINDS, Kind, render
from aiosite.server.deploy.values import DeployValues, deploy_values
from aiosite.settings import Settings


def deploy_file(kind: Kind, settings: Settings) -> str:
    """The text of the ``kind`` file ("nginx", "systemd", "supervisor") for ``settings``."""
    return render(kind, deploy_values(settings))


__all__ = ["KINDS", "DeployValues", "Kind", "deploy_file", "deploy_values", "render"]
