"""Holes: the parts of a cached fragment or page rendered afresh for every request.

``{% nocache %}…{% endnocache %}`` marks a hole. Inside something being
cached (a fragment, a list, a page) its body is not rendered: a *marker*
takes its place, and the hole (where its body is written and the keyword
values given on the tag) is kept beside the content, in the frame and then
in the entry. Whoever serves the outermost cached thing *fills* the
markers, hit or miss alike: each hole's body is rendered with a fresh
request context (the project's context processors: ``request``, ``user``,
``csrf_token``…) plus its captured values. So what a page's rules judge
(session read, CSRF token used, …) is what was rendered outside its holes,
and the stored content holds no visitor's data.

A marker carries a random nonce, so content cannot forge one: text that
looks like a marker but names no hole of its own entry is left as it is.
Outside anything cached, a hole's body renders in place, as if the tag
were not there, and what encloses it (the WSGI page cache, which cannot
fill holes) does not store the page.
"""

from __future__ import annotations

import logging
import pickle
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from django.http import HttpRequest
from django.template import TemplateDoesNotExist, engines

from cachesweeper import collector

logger = logging.getLogger("cachesweeper")

#: At most this many bytes of pickled values per hole: they are stored with every entry.
MAX_VALUES_BYTES = 2048

_PREFIX = "<!--cs-hole:"
_MARKER = re.compile(r"<!--cs-hole:([0-9a-f]{32})-->")


class Hole(NamedTuple):
    """One hole as stored with its content: which body, from which template, with what."""

    place: str  # where the body is written: template, line and body digest
    template: str | None  # the template to load it from, in a process that has not parsed it
    values: dict[str, Any]  # the keyword values given on the tag, captured at render time


class Holed(NamedTuple):
    """Content with markers, and the holes they stand for (nonce -> hole)."""

    content: Any
    holes: dict[str, Hole]


class Body(Protocol):
    """A hole's body as a template engine parsed it."""

    def render_hole(self, values: Mapping[str, Any], request: HttpRequest | None) -> str: ...


#: place -> body, filled when templates are parsed (every process parses its own).
_bodies: dict[str, Body] = {}


def register(place: str, body: Body) -> None:
    """Remember a hole's body when its template is parsed."""
    _bodies[place] = body


class HoleValueError(ValueError):
    """A ``{% nocache %}`` value that cannot be stored with the content."""


def marker(place: str, template: str | None, values: dict[str, Any]) -> str | None:
    """The marker to render instead of a hole's body; ``None``: render the body in place.

    Inside something cached, the hole joins the current frame. Outside, the
    body renders in place; a frame that cannot keep holes (the WSGI page
    cache's) is spoiled, so the page is not stored with one visitor's part.
    """
    frame = collector.current()
    if frame is None:
        return None
    if not frame.keeps_holes:
        collector.spoil()
        return None
    _check(place, values)
    nonce = secrets.token_hex(16)
    frame.add_holes({nonce: Hole(place, template, values)})
    return f"{_PREFIX}{nonce}-->"


def _check(place: str, values: dict[str, Any]) -> None:
    try:
        size = len(pickle.dumps(values, pickle.HIGHEST_PROTOCOL))
    except Exception as error:
        names = ", ".join(sorted(values))
        raise HoleValueError(
            f"{{% nocache %}} at {place}: its values ({names}) are stored with the cached "
            f"content and must be picklable ({error}). Pass ids or strings and load objects "
            "inside the hole."
        ) from error
    if size > MAX_VALUES_BYTES:
        raise HoleValueError(
            f"{{% nocache %}} at {place}: its values take {size} bytes pickled, more than "
            f"{MAX_VALUES_BYTES}; they are stored with every entry that shows the hole. Pass "
            "ids or short strings and load the rest inside the hole."
        )


def with_holes(value: Any, holes: dict[str, Hole]) -> Any:
    """``value``, wrapped with its holes when it has any."""
    return Holed(value, holes) if holes else value


def content(value: Any) -> Any:
    """The content of a served value, markers included."""
    return value.content if isinstance(value, Holed) else value


def report(value: Any) -> None:
    """An entry served from the cache: its holes join the enclosing frame, as its tokens do."""
    if isinstance(value, Holed):
        frame = collector.current()
        if frame is not None and frame.keeps_holes:
            frame.add_holes(value.holes)


def fill(
    text: str,
    holes: Mapping[str, Hole],
    request: HttpRequest | None,
    render: Callable[[Hole], str] | None = None,
) -> str:
    """Replace each marker of ``holes`` in ``text`` by its hole rendered for ``request``.

    ``render`` replaces the rendering (ESI writes an include instead).
    """
    if _PREFIX not in text:
        return text
    draw = render or (lambda hole: render_hole(hole, request))

    def replace(match: re.Match[str]) -> str:
        hole = holes.get(match.group(1))
        return match.group(0) if hole is None else draw(hole)

    return _MARKER.sub(replace, text)


def render_hole(hole: Hole, request: HttpRequest | None) -> str:
    """One hole's body, rendered for ``request`` with its captured values."""
    return body(hole).render_hole(hole.values, request)


def body(hole: Hole) -> Body:
    """The parsed body of ``hole``, loading its template when this process has not yet."""
    found = _bodies.get(hole.place)
    if found is None and hole.template is not None:
        for backend in engines.all():
            try:
                backend.get_template(hole.template)
            except TemplateDoesNotExist:
                continue
            found = _bodies.get(hole.place)
            if found is not None:
                break
    if found is None:
        raise HoleLost(
            f"{{% nocache %}} at {hole.place} is not in any template this process can load "
            "(a template changed since the content was stored, or an inline template not "
            "built in this process)"
        )
    return found


class HoleLost(LookupError):
    """Stored content names a hole whose body no template here has any more.

    Whoever serves it renders afresh instead, and forgets the entry.
    """
