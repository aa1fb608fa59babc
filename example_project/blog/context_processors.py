from __future__ import annotations

from django.http import HttpRequest

from .middleware import RequestLog, current_log


def cache_events(request: HttpRequest) -> dict[str, RequestLog | None]:
    """Expose this request's fragment log to templates.

    The log is the live object, filled while the page renders; the base template
    reads it in the footer, after the content blocks, so it is complete by then.
    """
    return {"cache_log": current_log()}
