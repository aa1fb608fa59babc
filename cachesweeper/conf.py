"""Settings for cachesweeper, read from ``settings.CACHESWEEPER``.

Values are read on first use and again whenever Django reports the setting
changed (``override_settings`` sends ``setting_changed``), never frozen at
import, so ``override_settings`` in a user's tests takes effect at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "CACHE": "default",
    "VERSION_CACHE": "default",
    "KEY_PREFIX": "cs",
    "USING": "counter",
    "GRACE": 0,
    "COLD_WAIT": 2.0,
    "CACHEABLE_STATUSES": (200,),
    "EDGES": [],
    "PAGE_RULES": [],
}


class Settings:
    """Attribute access to ``CACHESWEEPER`` with :data:`DEFAULTS` filled in."""

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None

    def reload(self) -> None:
        self._values = None
        from cachesweeper import tokens  # settings first: tokens reads them

        tokens.forget_attributes()

    def _get(self, name: str) -> Any:
        values = self._values
        if values is None:
            values = self._values = self._load()
        return values[name]

    @staticmethod
    def _load() -> dict[str, Any]:
        if not settings.configured:  # a plain WSGI app using the WSGI page cache
            return dict(DEFAULTS)
        user = getattr(settings, "CACHESWEEPER", None)
        if not isinstance(user, dict):  # reported by check cachesweeper.E002
            return dict(DEFAULTS)
        return {**DEFAULTS, **user}

    @property
    def CACHE(self) -> str:
        return str(self._get("CACHE"))

    @property
    def VERSION_CACHE(self) -> str:
        return str(self._get("VERSION_CACHE"))

    @property
    def KEY_PREFIX(self) -> str:
        return str(self._get("KEY_PREFIX"))

    @property
    def USING(self) -> str:
        return str(self._get("USING"))

    @property
    def GRACE(self) -> int:
        return int(self._get("GRACE"))

    @property
    def COLD_WAIT(self) -> float:
        """Seconds a cold miss (with grace) waits for the request already rendering it."""
        return float(self._get("COLD_WAIT"))

    @property
    def CACHEABLE_STATUSES(self) -> frozenset[int]:
        return frozenset(int(status) for status in self._get("CACHEABLE_STATUSES"))

    @property
    def EDGES(self) -> list[dict[str, Any]]:
        return list(self._get("EDGES"))

    @property
    def PAGE_RULES(self) -> list[Any]:
        return list(self._get("PAGE_RULES"))


conf = Settings()


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHESWEEPER":
        conf.reload()
