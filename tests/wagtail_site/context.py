"""The footer and banner snippets, in every template's context."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tests.wagtail_site.models import Banner, Footer


def footer(request: HttpRequest) -> dict[str, Any]:
    return {
        "footer": Footer.objects.order_by("pk").first(),
        "banner": Banner.objects.filter(live=True).order_by("pk").first(),
    }
