from django.apps import AppConfig


class CacheSweeperConfig(AppConfig):
    """Registers the system checks (and template digests' reload hooks) when Django starts.

    Registered models connect their signals in ``register()`` itself, so
    nothing else waits for ``ready()``.
    """

    name = "cachesweeper"
    verbose_name = "cachesweeper"

    def ready(self) -> None:
        # Registers the system checks, and the digests' autoreloader receivers.
        from cachesweeper import checks, digests  # noqa: F401
