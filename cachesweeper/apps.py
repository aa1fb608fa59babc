from django.apps import AppConfig


class CacheSweeperConfig(AppConfig):
    """Registers the system checks when Django starts.

    Registered models connect their signals in ``register()`` itself, so
    nothing else waits for ``ready()``.
    """

    name = "cachesweeper"
    verbose_name = "cachesweeper"

    def ready(self) -> None:
        from cachesweeper import checks  # noqa: F401  (registers the system checks)
