"""What an edge fetches for a shared page with ESI includes: one hole, or a CSRF cookie.

Both answer ``Cache-Control: private, no-store``: they are one visitor's,
and no edge may keep them.
"""

from __future__ import annotations

import logging

from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from cachesweeper import esi, holes

logger = logging.getLogger("cachesweeper")


@require_safe
def hole(request: HttpRequest, reference: str) -> HttpResponse:
    """One hole rendered for the requesting visitor, from its signed reference.

    A forged or altered reference, or one naming a hole no template here
    has (a deploy removed it), gets 400 and never any content.
    """
    try:
        found = esi.unsign(reference)
        body = holes.body(found)
    except (signing.BadSignature, LookupError) as error:
        logger.warning("cachesweeper: refused hole reference %.80r: %s", reference, error)
        return _private(HttpResponseBadRequest("bad hole reference"))
    return _private(HttpResponse(body.render_hole(found.values, request)))


@require_safe
@ensure_csrf_cookie
def csrf_cookie(request: HttpRequest) -> HttpResponse:
    """Nothing but Django's CSRF cookie, for a visitor about to get holes that need it.

    The edge cannot pass on a ``Set-Cookie`` of an include request, so the
    shipped VCL asks here first and adds the cookie to the page it delivers.
    """
    return _private(HttpResponse(status=204))


def _private(response: HttpResponse) -> HttpResponse:
    patch_cache_control(response, private=True, no_store=True)
    return response
