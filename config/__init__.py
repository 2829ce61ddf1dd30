"""chatq's configuration: one typed, frozen `Settings` read once from the environment."""

from config.settings import (
    KEYED_PROVIDERS,
    PROVIDERS,
    ProviderLimits,
    Secret,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = [
    "KEYED_PROVIDERS",
    "PROVIDERS",
    "ProviderLimits",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
]
