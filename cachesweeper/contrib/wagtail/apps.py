from __future__ import annotations

from django.apps import AppConfig


class CacheSweeperWagtailConfig(AppConfig):
    """Registers Wagtail's models and connects Wagtail's signals once every app is loaded.

    Listed after Wagtail's apps (and after the project's apps that register
    Wagtail models themselves, whose options are kept and completed).
    """

    name = "cachesweeper.contrib.wagtail"
    label = "cachesweeper_wagtail"
    verbose_name = "cachesweeper for Wagtail"

    def ready(self) -> None:
        from cachesweeper.contrib.wagtail import receivers, registration

        registration.register_all()
        receivers.connect()
