"""Judging the visitor from async code without touching the database on the event loop."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest


async def aload_user(request: HttpRequest | None) -> None:
    """Load ``request.user`` in a thread, so judging the response from async code needs no query.

    Whether a response may be shared depends on whether the visitor is logged
    in; with a session cookie that loads the session and the user, which
    Django refuses to do from an event loop (``SynchronousOnlyOperation``).
    Without a session cookie nothing is loaded, so nothing is done here.
    """
    if request is None or settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return
    user = getattr(request, "user", None)
    if user is not None:
        await sync_to_async(lambda: user.is_authenticated)()
