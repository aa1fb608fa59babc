"""The per-request collector of dependency names (Russian-doll caching).

Every fragment that renders, hit or miss, reports the names it depends on,
with the counter token it saw for each, to the innermost open *frame*. An
enclosing fragment, a cached page or the edge headers open a frame around
their content and so learn the union of everything rendered inside them.

Tokens travel with the names because an outer entry must be stored against
the tokens its inner content was built from (read before that content was
rendered), not against tokens read afterwards, which a concurrent sweep may
already have moved on. A ``ContextVar`` keeps this right for threads and
async code alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.signals import request_finished, request_started

_current: ContextVar[Frame | None] = ContextVar("cachesweeper_frame", default=None)


class Frame:
    """What was rendered inside one fragment, page or response."""

    def __init__(
        self, parent: Frame | None, wants_tokens: bool, keeps_holes: bool | None = None
    ) -> None:
        self.parent = parent
        self.wants_tokens: bool = wants_tokens or (parent is not None and parent.wants_tokens)
        self.tokens: dict[str, int | None] = {}
        self.conflicted = False
        #: Whether ``{% nocache %}`` leaves a marker here, filled by the outermost such frame.
        self.keeps_holes: bool = (
            keeps_holes if keeps_holes is not None else parent is not None and parent.keeps_holes
        )
        self.holes: dict[str, Any] = {}  # nonce -> holes.Hole
        #: Holes were filled for this visitor inside: what shows them is theirs alone.
        self.filled_holes = False
        #: Holes became ESI includes inside: the edge must be told to process them.
        self.esi_holes = False

    def add_holes(self, holes: Mapping[str, Any]) -> None:
        self.holes.update(holes)

    def add(self, tokens: Mapping[str, int | None]) -> None:
        for name, token in tokens.items():
            if name not in self.tokens:
                self.tokens[name] = token
            elif self.tokens[name] != token:
                # Two pieces of content saw different versions of one
                # dependency: a sweep happened mid-render.
                self.conflicted = True

    @property
    def complete(self) -> bool:
        """True when the content can be stored: every token known and consistent."""
        return not self.conflicted and None not in self.tokens.values()

    @property
    def names(self) -> list[str]:
        return list(self.tokens)


def current() -> Frame | None:
    return _current.get()


def wants_tokens() -> bool:
    """Whether an enclosing cached fragment or page will store what renders now."""
    frame = _current.get()
    return frame is not None and frame.wants_tokens


def report(tokens: Mapping[str, int | None]) -> None:
    """Tell the innermost frame, if any, that content depending on ``tokens`` rendered."""
    frame = _current.get()
    if frame is not None:
        frame.add(tokens)


def spoil() -> None:
    """Mark the innermost frame as not storable (its tokens cannot be known)."""
    frame = _current.get()
    if frame is not None:
        frame.conflicted = True


@contextmanager
def collect(wants_tokens: bool = True, keeps_holes: bool | None = None) -> Iterator[Frame]:
    """Open a frame; on exit its names (and tokens, and holes) flow into the enclosing frame.

    ``keeps_holes``: whether holes rendered inside leave markers (``None``: as
    the enclosing frame does).
    """
    parent = _current.get()
    frame = Frame(parent, wants_tokens, keeps_holes)
    reset = _current.set(frame)
    try:
        yield frame
    finally:
        _current.reset(reset)
        if parent is not None:
            parent.add(frame.tokens)
            parent.conflicted = parent.conflicted or frame.conflicted
            if frame.holes and parent.keeps_holes:
                parent.holes.update(frame.holes)
            parent.filled_holes = parent.filled_holes or frame.filled_holes
            parent.esi_holes = parent.esi_holes or frame.esi_holes


# -- when the request began --------------------------------------------------------
#
# A view loads its data before its template reads tokens. If a write commits
# and sweeps in between, the tokens read are already the new ones while the
# data is the old: content must not be stored when a dependency it was built
# from was swept after the request began. Django's ``request_started`` marks
# the start; the WSGI page cache marks it earlier, around the whole app.

_started: ContextVar[tuple[float, str] | None] = ContextVar("cachesweeper_started", default=None)


def request_started_at() -> float | None:
    """When the current request began (epoch seconds), if there is one."""
    started = _started.get()
    return started[0] if started is not None else None


class request:  # used like a function: ``with request(started):``
    """Mark a request as begun at ``started`` for everything inside.

    A class rather than ``@contextmanager``: the WSGI page cache enters it on
    every hit, and a generator costs more than a class.
    """

    def __init__(self, started: float) -> None:
        self.started = started

    def __enter__(self) -> None:
        self.reset = _started.set((self.started, "outer"))

    def __exit__(self, *exc: object) -> None:
        _started.reset(self.reset)


def _on_request_started(**kwargs: object) -> None:
    started = _started.get()
    if started is None or started[1] == "django":  # an outer layer's mark stays
        _started.set((time.time(), "django"))


def _on_request_finished(**kwargs: object) -> None:
    started = _started.get()
    if started is not None and started[1] == "django":
        _started.set(None)


request_started.connect(_on_request_started, dispatch_uid="cachesweeper.request_started")
request_finished.connect(_on_request_finished, dispatch_uid="cachesweeper.request_finished")
