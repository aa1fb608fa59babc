"""Which responses a shared cache may keep, and if not, why not.

One set of rules for every page cache (``cache_page``, the site-wide
middleware, the WSGI page cache) and every edge, so that a page is never
shared by one and refused by another for no reason a user could see.

**Anonymous visitors.** A request with no session cookie and no credentials
comes from an anonymous visitor. Its view may read ``request.user`` or the
(empty) session, as every base template with a login link does; Django then
adds ``Vary: Cookie``, but every such visitor gets the same page, so it is
shared, and served again only to visitors without a session cookie. Writing
the session, using a CSRF token, showing messages or a logged-in user make
the page personal.

The reason a response was refused is logged (DEBUG, logger ``cachesweeper``)
and kept on the response as ``cachesweeper_refusal``, for the debug panel,
``manage.py cachesweeper inspect --url`` and templates.
"""

from __future__ import annotations

import logging
import re

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import has_vary_header

from cachesweeper.conf import conf

logger = logging.getLogger("cachesweeper")

#: Attribute set on a refused response: the rule that refused it.
REFUSAL_ATTRIBUTE = "cachesweeper_refusal"
#: The cookie Django's ``CookieStorage`` keeps pending messages in.
MESSAGES_COOKIE = "messages"

_COMMA = re.compile(r"\s*,\s*")
_CSRF_USED = "it uses a CSRF token ({% csrf_token %} or get_token())"


def visitor(request: HttpRequest) -> str | None:
    """``""`` for an anonymous visitor, the user's key when logged in, ``None`` if unknown.

    The session is only loaded when the request carries a session cookie:
    without one there is no session to load, and no user.
    """
    if "HTTP_AUTHORIZATION" in request.META:
        return None  # authenticated some other way: never share
    if not has_session_cookie(request):
        # Only a user the request already loaded is looked at (e.g. by
        # RemoteUserMiddleware): loading one here would cost every page a query.
        user = getattr(request, "_cached_user", None)
        return f"user:{user.pk}" if user is not None and user.is_authenticated else ""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    return f"user:{user.pk}"


async def aload_user(request: HttpRequest | None) -> None:
    """Load ``request.user`` in a thread, so judging the response from async code needs no query.

    Whether a response may be shared depends on whether the visitor is logged
    in; with a session cookie that loads the session and the user, which
    Django refuses to do from an event loop (``SynchronousOnlyOperation``).
    Without a session cookie nothing is loaded, so nothing is done here.
    """
    if request is None or not has_session_cookie(request):
        return
    user = getattr(request, "user", None)
    if user is not None:
        await sync_to_async(lambda: user.is_authenticated)()


def is_preview(request: object) -> bool:
    """A preview of unpublished content (Wagtail's flags): never stored, never served a copy.

    Wagtail marks its simulated preview requests ``is_dummy`` before the
    middleware runs and ``is_preview`` before the view. The draft they show
    is an instance loaded from its row and changed in memory, so only the
    request can tell that fragments on it must not be shared.
    """
    return bool(getattr(request, "is_preview", False) or getattr(request, "is_dummy", False))


def has_session_cookie(request: HttpRequest) -> bool:
    """A session cookie with a value (an emptied one is no session, for Django too)."""
    return bool(request.COOKIES.get(settings.SESSION_COOKIE_NAME))


def has_visitor_state(request: HttpRequest) -> bool:
    """The visitor carries a session cookie, or messages waiting in a cookie."""
    cookies = request.COOKIES
    return bool(cookies.get(settings.SESSION_COOKIE_NAME) or cookies.get(MESSAGES_COOKIE))


def read_empty_state(request: HttpRequest) -> bool:
    """The view read the empty session or messages of a visitor without either.

    Such a page may be shared, but only with other visitors without them.
    """
    if has_visitor_state(request):
        return False
    session = getattr(request, "session", None)
    if session is not None and getattr(session, "accessed", False):
        return not getattr(session, "modified", False)
    messages = getattr(request, "_messages", None)
    return messages is not None and hasattr(messages, "_loaded_data")


def refusal(
    request: HttpRequest,
    response: HttpResponseBase,
    *,
    private: bool = False,
    storing: bool = True,
    outermost: bool = False,
) -> str | None:
    """Why a shared cache must not keep ``response``; ``None`` when it may.

    ``private``: the page is cached per user (``cacheability="private"``), so
    personal content is allowed. ``storing``: judged for a page cache, which
    stores GET responses only (an edge also tags HEAD responses).
    ``outermost``: judged outside ``SessionMiddleware`` (see :func:`personal`).
    """
    reason = _refusal(request, response, private, storing, outermost)
    if reason is not None:
        logger.debug("cachesweeper: %s not stored: %s", request.path, reason)
        if not hasattr(response, REFUSAL_ATTRIBUTE):  # the first judge saw the cause
            setattr(response, REFUSAL_ATTRIBUTE, reason)
    return reason


def _refusal(
    request: HttpRequest,
    response: HttpResponseBase,
    private: bool,
    storing: bool,
    outermost: bool,
) -> str | None:
    methods = ("GET",) if storing else ("GET", "HEAD")
    if request.method not in methods:
        return f"it answers a {request.method} request"
    if getattr(request, "do_not_cache", False):
        return "the view set request.do_not_cache"
    if is_preview(request):
        return "it is a preview"
    if response.streaming:
        return "it is a streaming response"
    if response.status_code not in conf.CACHEABLE_STATUSES:
        return f'its status {response.status_code} is not in CACHESWEEPER["CACHEABLE_STATUSES"]'
    directives = {
        part.split("=", 1)[0].strip().lower()
        for part in _COMMA.split(response.get("Cache-Control", ""))
        if part
    }
    forbidden = ["no-store", "no-cache"] if private else ["no-store", "no-cache", "private"]
    for directive in forbidden:
        if directive in directives:
            return f"its Cache-Control says {directive}"
    if has_vary_header(response, "*"):
        return "it varies on *"
    reason = None if private else personal(request, response, outermost)
    if reason is None and response.cookies:
        # Judged after ``personal``, which names the cause while it can still see it.
        reason = f"it sets a cookie ({', '.join(sorted(response.cookies))})"
        if settings.CSRF_COOKIE_NAME in response.cookies:
            reason += f": {_CSRF_USED}"
    return reason


def personal(
    request: HttpRequest, response: HttpResponseBase, outermost: bool = False
) -> str | None:
    """Why the response is one visitor's own; ``None`` when every such visitor gets it.

    Inside ``SessionMiddleware`` (``cache_page``, the site-wide middleware,
    ``edge_cache``) a ``Vary: Cookie`` is the view's own: it reads some
    cookie. ``outermost`` (``EdgeMiddleware``), it may be the one
    ``SessionMiddleware`` adds for a session read; the view's own is then
    told apart only when the session was not read.
    """
    who = visitor(request)
    if who is None:
        return "the request carries credentials (an Authorization header)"
    if who:
        return "it was made for a logged-in user"
    if request.META.get("CSRF_COOKIE_NEEDS_UPDATE") or request.META.get("CSRF_COOKIE_USED"):
        return _CSRF_USED
    messages = getattr(request, "_messages", None)
    if getattr(messages, "used", False) and len(messages):  # type: ignore[arg-type]
        return "it shows messages"
    session = getattr(request, "session", None)
    if session is not None and getattr(session, "modified", False):
        return "it writes the session"
    accessed = session is not None and getattr(session, "accessed", False)
    if (accessed or hasattr(messages, "_loaded_data")) and has_visitor_state(request):
        return "it read the session or messages of a visitor who has them"
    if has_vary_header(response, "Cookie") and not (outermost and accessed):
        return "it varies on Cookie"
    return None
