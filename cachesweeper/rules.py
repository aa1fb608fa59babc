"""URL rules for the site-wide and WSGI page caches: ``(prefix_or_regex, ttl, grace)``.

A string is a path prefix matched on segment boundaries (``/blog`` matches
``/blog`` and ``/blog/post`` but not ``/blogger``); a compiled regex is
searched against the path. An optional fourth item gives tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PageRule:
    pattern: str | re.Pattern[str]
    ttl: float | None
    grace: float
    tags: Sequence[Any] = ()

    def matches(self, path: str) -> bool:
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.search(path) is not None
        prefix = self.pattern
        if prefix.endswith("/") or path == prefix:
            return path.startswith(prefix)
        return path.startswith(prefix + "/")


def compile_rules(rules: Iterable[Sequence[Any]]) -> list[PageRule]:
    """Validate and build rules; a clear ``ValueError`` says which one is wrong."""
    compiled = []
    for rule in rules:
        if not isinstance(rule, (list, tuple)) or len(rule) not in (3, 4):
            raise ValueError(
                f"page rule {rule!r} must be (prefix_or_regex, ttl, grace) or "
                "(prefix_or_regex, ttl, grace, tags)"
            )
        pattern, ttl, grace = rule[0], rule[1], rule[2]
        if not isinstance(pattern, (str, re.Pattern)):
            raise ValueError(f"page rule {rule!r}: the pattern must be a str or a compiled regex")
        if ttl is not None and (not isinstance(ttl, (int, float)) or ttl < 0):
            raise ValueError(f"page rule {rule!r}: ttl must be seconds >= 0 or None")
        if not isinstance(grace, (int, float)) or grace < 0:
            raise ValueError(f"page rule {rule!r}: grace must be seconds >= 0")
        tags = tuple(rule[3]) if len(rule) == 4 else ()
        compiled.append(PageRule(pattern, ttl, grace, tags))
    return compiled


def match(rules: Sequence[PageRule], path: str) -> PageRule | None:
    """The first rule that matches ``path``."""
    for rule in rules:
        if rule.matches(path):
            return rule
    return None
