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
    "WARNING_INTERVAL": 60,
    "INSTANCE_LIMIT": 100,
    "JOURNAL": True,
    "RELAY_DELAY": 3.0,
    "DATABASE_TRIGGERS": False,
}


class Settings:
    """Attribute access to ``CACHESWEEPER`` with :data:`DEFAULTS` filled in.

    A value is converted on first access and then kept as a plain instance
    attribute: the read path asks for several on every hit.
    """

    CACHE: str
    VERSION_CACHE: str
    KEY_PREFIX: str
    USING: str
    GRACE: int
    #: Seconds a cold miss (with grace) waits for the request already rendering it.
    COLD_WAIT: float
    CACHEABLE_STATUSES: frozenset[int]
    EDGES: list[dict[str, Any]]
    PAGE_RULES: list[Any]
    #: Seconds between two warnings about one unreachable cache (0: warn on every failure).
    WARNING_INTERVAL: float
    #: Rows of one model a ``touch`` path sweeps, or a page depends on, before the model.
    INSTANCE_LIMIT: int
    #: Write sweeps made in a transaction to the journal table, in that transaction.
    JOURNAL: bool
    #: Seconds a journaled sweep waits for its own process before a relay replays it.
    RELAY_DELAY: float
    #: PostgreSQL triggers journal every write of registered tables (:mod:`cachesweeper.triggers`).
    DATABASE_TRIGGERS: bool

    _CONVERTERS: dict[str, Any] = {
        "CACHE": str,
        "VERSION_CACHE": str,
        "KEY_PREFIX": str,
        "USING": str,
        "GRACE": int,
        "COLD_WAIT": float,
        "CACHEABLE_STATUSES": lambda statuses: frozenset(int(status) for status in statuses),
        "EDGES": list,
        "PAGE_RULES": list,
        "WARNING_INTERVAL": float,
        "INSTANCE_LIMIT": int,
        "JOURNAL": bool,
        "RELAY_DELAY": float,
        "DATABASE_TRIGGERS": bool,
    }

    def reload(self) -> None:
        self.__dict__.clear()

    def __getattr__(self, name: str) -> Any:
        try:
            convert = self._CONVERTERS[name]
        except KeyError:
            raise AttributeError(name) from None
        values = self.__dict__.get("_values")
        if values is None:
            values = self.__dict__["_values"] = self._load()
        value = self.__dict__[name] = convert(values[name])
        return value

    @staticmethod
    def _load() -> dict[str, Any]:
        if not settings.configured:  # a plain WSGI app using the WSGI page cache
            return dict(DEFAULTS)
        user = getattr(settings, "CACHESWEEPER", None)
        if not isinstance(user, dict):  # reported by check cachesweeper.E002
            return dict(DEFAULTS)
        return {**DEFAULTS, **user}


conf = Settings()


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHESWEEPER":
        conf.reload()
