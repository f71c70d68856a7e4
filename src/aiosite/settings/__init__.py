"""Typed settings: the site-wide sections, the sections batteries and apps declare, and
loading them from YAML layers and environment variables with one-line errors.

``aiosite.load_settings`` (in ``aiosite.site``) loads a project's settings with the
sections of the built-in batteries and of the apps it lists.
"""

from aiosite.settings.loading import CONFIG_DIR as CONFIG_DIR
from aiosite.settings.loading import ENV_VAR as ENV_VAR
from aiosite.settings.loading import FACTS as FACTS
from aiosite.settings.loading import SectionProvider as SectionProvider
from aiosite.settings.loading import current_env as current_env
from aiosite.settings.loading import find_project_dir as find_project_dir
from aiosite.settings.loading import hide_password as hide_password
from aiosite.settings.loading import project_relative as project_relative
from aiosite.settings.loading import read_settings as read_settings
from aiosite.settings.loading import revalidate as revalidate
from aiosite.settings.loading import yaml_error as yaml_error
from aiosite.settings.schema import DEFAULT_ENV as DEFAULT_ENV
from aiosite.settings.schema import ENV_PREFIX as ENV_PREFIX
from aiosite.settings.schema import LOCAL_ENVS as LOCAL_ENVS
from aiosite.settings.schema import Settings as Settings
from aiosite.settings.schema import settings_class as settings_class
from aiosite.settings.sections import INSECURE_KEY_PREFIX as INSECURE_KEY_PREFIX
from aiosite.settings.sections import DebugSettings as DebugSettings
from aiosite.settings.sections import DeployProblem as DeployProblem
from aiosite.settings.sections import DeploySettings as DeploySettings
from aiosite.settings.sections import LoggingSettings as LoggingSettings
from aiosite.settings.sections import RedisSettings as RedisSettings
from aiosite.settings.sections import Section as Section
from aiosite.settings.sections import SecuritySettings as SecuritySettings
from aiosite.settings.sections import ServerSettings as ServerSettings
from aiosite.settings.sections import SiteSettings as SiteSettings
from aiosite.settings.sections import UncheckedSection as UncheckedSection

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_ENV",
    "ENV_PREFIX",
    "ENV_VAR",
    "FACTS",
    "INSECURE_KEY_PREFIX",
    "LOCAL_ENVS",
    "DebugSettings",
    "DeployProblem",
    "DeploySettings",
    "LoggingSettings",
    "RedisSettings",
    "Section",
    "SectionProvider",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "SiteSettings",
    "UncheckedSection",
    "current_env",
    "find_project_dir",
    "hide_password",
    "project_relative",
    "read_settings",
    "revalidate",
    "settings_class",
    "yaml_error",
]
