"""Holes at the edge: an ESI include per hole, so Varnish or Fastly keeps one page for all.

Without ESI a page with holes is filled by Django for every visitor and is
then private (see :mod:`cachesweeper.holes`). With an edge whose ``esi``
option is on, a request that came through it (the edge announces ESI in
``Surrogate-Capability``, as the shipped VCL does) gets each hole as
``<esi:include src="…/hole/<ref>/"/>`` instead: the page holds nobody's data,
stays public and tagged, and the edge fetches each visitor's holes from the
view in :mod:`cachesweeper.urls`. :func:`wanted` is the one place that decides.

The reference in the URL (where the hole's body is written, its template,
its captured values) is signed with Django's signing (salt :data:`SALT`), so
a visitor can neither forge one nor change its values; it is signed, not
encrypted: visitors may read the values. They must be JSON values (strings,
numbers, booleans, ``None``, lists, dicts with string keys) that come back
from JSON unchanged, so a hole renders alike filled or included: with an
ESI edge configured, other values raise :class:`~cachesweeper.holes.HoleValueError`
when the page renders, whether or not that request gets ESI.

The cookie: an edge drops the ``Set-Cookie`` of an ESI sub-request, so a
hole cannot give a first-time visitor the CSRF cookie its token is checked
against. An ESI page therefore names the cookie and a view that mints it
(:data:`CSRF_COOKIE_HEADER`, :data:`CSRF_URL_HEADER`); the shipped VCL fetches
that cookie for a visitor without one before the holes are requested.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape

from cachesweeper import safety
from cachesweeper.edges.loading import configured
from cachesweeper.holes import Hole, HoleValueError

logger = logging.getLogger("cachesweeper")

#: Signs hole references; only this module's references verify with it.
SALT = "cachesweeper.esi.hole"
#: The request header an edge announces ESI support in (the Edge Architecture's name).
CAPABILITY = "ESI/1.0"
#: What an ESI response adds to ``Surrogate-Control``: "process my includes".
CONTROL = 'content="ESI/1.0"'
#: Response headers for the edge: the CSRF cookie the page's holes need, and where to get it.
CSRF_COOKIE_HEADER = "X-Cachesweeper-Csrf-Cookie"
CSRF_URL_HEADER = "X-Cachesweeper-Csrf-Url"
#: Request attribute caching :func:`wanted` (the page cache and the fragments ask alike).
_DECISION = "_cachesweeper_esi"
#: Response attribute: this response's holes are ESI includes.
_MARKED = "_cachesweeper_esi"
#: The WSGI page cache's environ flag (``cachesweeper.middleware.WSGI_FLAG``).
_WSGI_FLAG = "cachesweeper.wsgi"


def enabled() -> bool:
    """Whether a configured edge processes ESI (its ``esi`` option is on)."""
    return any(edge.esi for edge in configured())


def wanted(request: HttpRequest | None) -> bool:
    """Does this request get ESI includes instead of filled holes?

    Yes when an edge with ``esi`` is configured and the request came through
    an edge that announced ESI, is a GET or HEAD from an anonymous visitor
    (no session cookie, no credentials: the only pages an edge shares), did
    not come through the WSGI page cache (it keys pages without the
    announcement) and ``cachesweeper.urls`` is mounted.
    """
    if request is None:
        return False
    decided = getattr(request, _DECISION, None)
    if decided is None:
        decided = _decide(request)
        setattr(request, _DECISION, decided)
    return bool(decided)


def _decide(request: HttpRequest) -> bool:
    if request.method not in ("GET", "HEAD") or request.META.get(_WSGI_FLAG):
        return False
    if CAPABILITY not in request.META.get("HTTP_SURROGATE_CAPABILITY", ""):
        return False
    if safety.has_session_cookie(request) or safety.visitor(request) != "":
        return False
    if not enabled():
        return False
    if not mounted():
        logger.error(
            "cachesweeper: an edge has OPTIONS['esi'] but cachesweeper.urls is not in the "
            "URLconf; holes are filled by Django and their pages are private"
        )
        return False
    return True


def mounted() -> bool:
    """Whether the project's URLconf includes ``cachesweeper.urls``."""
    try:
        reverse("cachesweeper:csrf")
    except NoReverseMatch:
        return False
    return True


# -- the references ------------------------------------------------------------------


def sign(hole: Hole) -> str:
    """The signed reference of ``hole``: URL-safe, the same for the same hole."""
    signer = signing.Signer(salt=SALT)
    return signer.sign_object([hole.place, hole.template, hole.values], compress=True)


def unsign(reference: str) -> Hole:
    """The hole a reference names; :class:`signing.BadSignature` if forged or altered."""
    loaded: Any = signing.Signer(salt=SALT).unsign_object(reference)
    if not (
        isinstance(loaded, list)
        and len(loaded) == 3
        and isinstance(loaded[0], str)
        and (loaded[1] is None or isinstance(loaded[1], str))
        and isinstance(loaded[2], dict)
    ):
        raise signing.BadSignature("not a hole reference")
    return Hole(loaded[0], loaded[1], loaded[2])


def include(hole: Hole) -> str:
    """The ESI include that stands for ``hole`` in a shared page."""
    src = reverse("cachesweeper:hole", args=[sign(hole)])
    return f'<esi:include src="{escape(src)}"/>'


def check(place: str, values: dict[str, Any]) -> None:
    """Refuse captured values that an ESI reference could not carry unchanged.

    Only with an ESI edge configured: the same page may be filled for one
    request and included for the next, so it is checked for every render.
    """
    if not values or not enabled():
        return
    try:
        same = json.loads(json.dumps(values)) == values and _exact(values)
    except (TypeError, ValueError):
        same = False
    if not same:
        names = ", ".join(sorted(values))
        raise HoleValueError(
            f"{{% nocache %}} at {place}: with an ESI edge its values ({names}) travel in a "
            "signed URL as JSON and must be JSON values that come back unchanged (strings, "
            "numbers, booleans, None, lists, dicts with string keys). Pass ids or strings."
        )


def _exact(value: Any) -> bool:
    """No tuples, no non-string keys: JSON would turn them into something else."""
    if isinstance(value, dict):
        return all(isinstance(key, str) and _exact(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_exact(item) for item in value)
    return value is None or isinstance(value, (str, int, float, bool))


# -- the response --------------------------------------------------------------------


def mark(response: HttpResponseBase) -> None:
    """Tell the edge to process this response's includes, and which cookie its holes need.

    Idempotent: ``EdgeMiddleware`` marks again after writing the edges'
    headers (Fastly's ``Surrogate-Control`` among them).
    """
    setattr(response, _MARKED, True)
    control = response.get("Surrogate-Control", "")
    if CONTROL not in control:
        response["Surrogate-Control"] = f"{control}, {CONTROL}" if control else CONTROL
    cookie = csrf_cookie()
    if cookie is not None:
        response[CSRF_COOKIE_HEADER] = cookie
        response[CSRF_URL_HEADER] = reverse("cachesweeper:csrf")


def marked(response: HttpResponseBase) -> bool:
    """Whether :func:`mark` marked ``response``."""
    return bool(getattr(response, _MARKED, False))


def csrf_cookie() -> str | None:
    """The CSRF cookie holes may need, or ``None`` (no CSRF middleware, or kept in sessions)."""
    middleware = getattr(settings, "MIDDLEWARE", None) or []
    if "django.middleware.csrf.CsrfViewMiddleware" not in middleware:
        return None
    if getattr(settings, "CSRF_USE_SESSIONS", False):
        return None
    return str(settings.CSRF_COOKIE_NAME)
