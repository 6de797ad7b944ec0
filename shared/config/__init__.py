"""Typed application settings (read once from app settings / environment)."""

from shared.config.settings import Settings, get_settings, reset_settings

__all__ = ["Settings", "get_settings", "reset_settings"]
