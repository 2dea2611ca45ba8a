"""Typed settings, loaded and validated once at start-up and passed down."""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
