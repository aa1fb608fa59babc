from __future__ import annotations

from django.apps import AppConfig


class WagtailSiteConfig(AppConfig):
    name = "tests.wagtail_site"
    label = "wagtail_site"

    def ready(self) -> None:
        import cachesweeper
        from tests.wagtail_site.models import Author

        # A project's own options, registered before cachesweeper.contrib.wagtail's
        # ready(): kept, with the snippet's Wagtail options added.
        cachesweeper.register(Author, touch=["article_links__page"])
