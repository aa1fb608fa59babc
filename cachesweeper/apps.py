from django.apps import AppConfig


class CacheSweeperConfig(AppConfig):
    name = "cachesweeper"
    verbose_name = "cachesweeper"

    def ready(self) -> None:
        from cachesweeper import checks  # noqa: F401  (registers the system checks)
