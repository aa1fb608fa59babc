from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started


def _start_relay(**kwargs: Any) -> None:
    """With database triggers, writes from anywhere journal: serving processes relay them."""
    from cachesweeper.conf import conf

    if conf.DATABASE_TRIGGERS and conf.JOURNAL:
        from cachesweeper.relay import relay

        relay.start()


class CacheSweeperConfig(AppConfig):
    """Registers the system checks (and template digests' reload hooks) when Django starts.

    Registered models connect their signals in ``register()`` itself, so
    nothing else waits for ``ready()``.
    """

    name = "cachesweeper"
    verbose_name = "cachesweeper"

    def ready(self) -> None:
        # Registers the system checks, the digests' autoreloader receivers and
        # the triggers' post_migrate receiver.
        from cachesweeper import checks, digests, triggers  # noqa: F401

        request_started.connect(_start_relay, dispatch_uid="cachesweeper.relay")
