"""What every edge backend shares: options, header fitting, purge batches.

An *edge* is a shared HTTP cache in front of Django. A backend turns
dependency names into response headers (so the edge can tag what it
stores) and sweeps into purges. Names are header-safe already (see
:mod:`cachesweeper.dependencies`); backends still refuse anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

#: Attribute on a response: the ``(CachePolicy, tag names)`` its view asked edges for.
RESPONSE_ATTRIBUTE = "_cachesweeper_edge"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._~:/%*=-]+$")


@dataclass(frozen=True)
class CachePolicy:
    """How long edges may keep a response: set by ``edge_cache`` / ``lscache``."""

    max_age: int
    cacheability: str = "public"  # "public", "private" or "no-cache"


@dataclass
class PurgeBatch:
    """Work for one purge call: dependency names, URL paths, or everything."""

    names: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    everything: bool = False
    host: str | None = None  # the public host of the site, for URL purges

    def __bool__(self) -> bool:
        return bool(self.names or self.urls or self.everything)


class TooManyNames(ValueError):
    """A response depends on more than the edge's tag header can carry."""


class Edge:
    """Base class of edge backends. Subclasses set the class attributes they use.

    ``OPTIONS`` from settings arrive as keyword arguments; unknown ones are an
    error, so a typo in settings is reported rather than ignored.
    """

    #: Response header listing dependency names (``None``: this edge has none).
    tag_header: ClassVar[str | None] = None
    #: Separator between names in ``tag_header``.
    separator: ClassVar[str] = " "
    #: Largest ``tag_header`` value the provider accepts, in bytes.
    max_header_bytes: ClassVar[int] = 8192
    #: Most names (or URLs) one purge call may carry.
    max_batch: ClassVar[int] = 256
    #: Options this backend takes, with their defaults.
    options: ClassVar[Mapping[str, Any]] = {}
    #: Purges ride on the response of a request (LiteSpeed) instead of a worker.
    request_bound: ClassVar[bool] = False
    #: The edge assembles pages from ESI includes (the ``esi`` option of Varnish and
    #: Fastly): pages with holes are sent to it with includes (:mod:`cachesweeper.esi`).
    esi: bool = False

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ImproperlyConfigured(
                f"{type(self).__name__} got unknown OPTIONS {', '.join(unknown)}; "
                f"it takes {', '.join(self.options) or 'none'}"
            )
        for name, default in self.options.items():
            setattr(self, name, options.get(name, default))

    @property
    def label(self) -> str:
        return type(self).__name__

    def response_headers(self, names: Sequence[str], policy: CachePolicy | None) -> dict[str, str]:
        """Headers for a response built from ``names``; ``policy`` when edge caching is on."""
        headers: dict[str, str] = {}
        if self.tag_header and names:
            value = fit(names, self.separator, self.max_header_bytes)
            if value is None:
                raise TooManyNames(self.label)
            headers[self.tag_header] = value
        return headers

    def purge(self, batch: PurgeBatch) -> None:
        """Deliver one batch; raise on failure (the worker retries with backoff)."""
        raise NotImplementedError

    def purge_headers(self) -> dict[str, str]:
        """Headers that carry purges on a response (request-bound edges only)."""
        return {}


def check_name(name: str) -> str:
    """Refuse anything that could split a tag list or inject a header."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"not a header-safe dependency name: {name!r}")
    return name


def _model(name: str) -> str | None:
    """The model part of an instance name (``blog.article.42`` -> ``blog.article``)."""
    parts = name.split(".", 2)
    return f"{parts[0]}.{parts[1]}" if len(parts) == 3 else None


def any_instance(name: str) -> str:
    """``blog.article.42`` -> ``blog.article.*``: every response with an article on it.

    Purged only when a full purge queue widens. ``*`` never appears in an
    encoded name, so these tags cannot collide with instances or tags.
    """
    model = _model(name)
    return f"{model}.*" if model else name


def coarse(name: str) -> str:
    """``blog.article.42`` -> ``blog.article.**``: responses whose names were coarsened.

    Every instance purge also purges its model's coarse tag
    (:func:`purge_names`), so a coarsened response is never missed.
    """
    model = _model(name)
    return f"{model}.**" if model else name


def purge_names(names: Iterable[str]) -> list[str]:
    """The tags to purge for swept ``names``: each, plus its coarse tag for instances."""
    result: dict[str, None] = {}
    for name in names:
        result[check_name(name)] = None
        result[coarse(name)] = None
    return list(result)


def widen(names: Iterable[str]) -> list[str]:
    """Fewer, wider tags for a purge queue that is full: instances become their model's."""
    return list(dict.fromkeys(any_instance(name) for name in names))


def fit(names: Iterable[str], separator: str, limit: int) -> str | None:
    """The tags of a response built from ``names``, joined within ``limit`` bytes.

    Instance names also get their model's :func:`any_instance` tag. If they
    do not fit, instances are replaced by their :func:`coarse` tag: such a
    response is purged more often, never missed. ``None`` when even that does
    not fit: the response must not be cached at the edge.
    """
    unique = list(dict.fromkeys(check_name(name) for name in names))
    models = [any_instance(name) for name in unique if _model(name)]
    joined = separator.join(dict.fromkeys([*unique, *models]))
    if len(joined.encode()) <= limit:
        return joined
    joined = separator.join(dict.fromkeys([*(coarse(name) for name in unique), *models]))
    return joined if len(joined.encode()) <= limit else None


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
