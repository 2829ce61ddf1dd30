"""chatq's configuration: one typed, frozen `Settings` read once from the environment."""

from config.providers import KEYED_PROVIDERS, PROVIDERS, TABLE, ProviderSpec, spec
from config.settings import (
    ProviderLimits,
    Secret,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = [
    "KEYED_PROVIDERS",
    "PROVIDERS",
    "TABLE",
    "ProviderLimits",
    "ProviderSpec",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
    "spec",
]
