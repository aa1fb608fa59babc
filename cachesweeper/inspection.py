"""Look inside the cache: what an entry holds, what a dependency's token is, which
page-cache entry a URL is served from.

The domain logic of ``manage.py cachesweeper``, kept apart from its argument
parsing and printing so it is read (and tested) as code: every function here
returns data or lines of text, and raises :class:`InspectionError`, which the
command reports as a ``InspectionError``.

(Not ``inspect.py``: a module of the package shadowing the standard library's
``inspect`` confuses readers, tools and scripts run from inside the package.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from django.apps import apps
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.exceptions import DisallowedHost, ValidationError
from django.db import DEFAULT_DB_ALIAS, models
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.urls import Resolver404, resolve

from cachesweeper import tokens
from cachesweeper.conf import conf
from cachesweeper.dependencies import instance_name, model_name, tag_name
from cachesweeper.entries import Entry
from cachesweeper.pages import (
    POLICY_ATTRIBUTE,
    PagePolicy,
    StoredPage,
    page_dependencies,
    page_key,
    variant_key,
    vary_pointer,
)
from cachesweeper.rules import compile_rules, match


class InspectionError(Exception):
    """A target that cannot be inspected or swept: the message says why, for a user."""


# -- finding what the command names ----------------------------------------------------


def check_tag(tag: str) -> None:
    """Refuse a tag name no header could carry (the edges would refuse it later)."""
    if not tag.strip():
        raise InspectionError(f"bad tag {tag!r}: a tag name cannot be empty or blank")
    if any(ord(char) < 32 or ord(char) == 127 for char in tag):
        raise InspectionError(f"bad tag {tag!r}: a tag name cannot contain control characters")


def find_model(label: str) -> type[models.Model]:
    """The model named ``app_label.Model``; an error says how to spell it."""
    if label.count(".") != 1:
        raise InspectionError(
            f"{label!r} is not app_label.Model: {_spelled(label)} (the app's label, a dot, "
            "the model's name)"
        )
    try:
        return apps.get_model(label)
    except LookupError as error:
        raise InspectionError(f"unknown model {label!r}: {error}") from None


def _spelled(label: str) -> str:
    """How to write ``label``: the installed models of that name, or an example."""
    name = label.rsplit(".", 1)[-1].lower()
    found = [model._meta.label for model in apps.get_models() if model._meta.model_name == name]
    if found:
        return f"write {' or '.join(found)}"
    return "write it like blog.Article"


def find_instances(
    model: type[models.Model], pks: Sequence[str], database: str, missing_means: str = ""
) -> list[Any]:
    """The rows with ``pks``, in the order given; an error names any that do not exist.

    ``missing_means`` finishes that error: what the command did not do because of it.
    """
    pk_field = model._meta.pk
    assert pk_field is not None
    try:
        wanted = [(raw, pk_field.to_python(raw)) for raw in pks]
        rows = model._base_manager.db_manager(database).filter(
            pk__in=[value for _, value in wanted]
        )
        found = {row.pk: row for row in rows}
    except (ValidationError, ValueError, TypeError) as error:
        messages = getattr(error, "messages", [str(error)])
        raise InspectionError(f"bad pk for {model._meta.label}: {' '.join(messages)}") from None
    missing = [raw for raw, value in wanted if value not in found]
    if missing:
        raise InspectionError(
            f"{model._meta.label} has no row with pk {', '.join(missing)}{missing_means}"
        )
    return list({value: found[value] for _, value in wanted}.values())


# -- the page cache of a URL ---------------------------------------------------------


def why_not_stored(request: HttpRequest) -> list[str]:
    """Ask the page once, as a visitor without cookies, and say what the page cache did."""
    client = Client(raise_request_exception=False)
    meta = {name: value for name, value in request.META.items() if name.startswith("HTTP_")}
    response = client.get(request.get_full_path(), secure=request.is_secure(), **meta)
    reason = getattr(response, "cachesweeper_refusal", None)
    asked = f"asked now as a visitor without cookies (status {response.status_code}):"
    if reason is None:
        return [f"{asked} shareable; inspect again to see its entry"]
    return [f"{asked} not stored: {reason}"]


def anonymous_request(url: str, headers: Sequence[str]) -> HttpRequest:
    """A GET from an anonymous visitor (no cookies), as the page cache would see it."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InspectionError(f"not an http(s) URL or a path: {url!r}")
        host = parts.netloc
    elif url.startswith("/"):
        host = _default_host()
    else:
        raise InspectionError(f"not a URL or a path starting with '/': {url!r}")
    meta: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise InspectionError(f"--header takes 'Name: value', not {header!r}")
        meta_name = name.strip().upper().replace("-", "_")
        if meta_name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            meta_name = f"HTTP_{meta_name}"
        meta[meta_name] = value.strip()
    if "HTTP_COOKIE" in meta or "HTTP_AUTHORIZATION" in meta:
        raise InspectionError(
            "inspect --url shows what anonymous visitors get; drop the Cookie/Authorization header"
        )
    meta["HTTP_HOST"] = host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = RequestFactory().get(path, secure=parts.scheme == "https")
    request.META.update(meta)
    try:
        request.get_host()
    except DisallowedHost as error:
        raise InspectionError(f"{error} (Django would answer 400 for this host)") from None
    return request


def _default_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        host = host.lstrip(".")
        if host and "*" not in host:
            return host
    return "localhost"


class PageCache(NamedTuple):
    """One page cache a URL goes through, and the view arguments its tags are asked with."""

    where: str
    policy: PagePolicy
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def page_policies(request: HttpRequest) -> list[PageCache]:
    """Where this URL's pages are cached: a ``PAGE_RULES`` rule, then the view's decorator."""
    found: list[PageCache] = []
    try:
        rule = match(compile_rules(conf.PAGE_RULES), request.path)
    except ValueError as error:
        raise InspectionError(f'CACHESWEEPER["PAGE_RULES"] is misconfigured: {error}') from None
    if rule is not None:
        policy = PagePolicy(rule.ttl, tags=rule.tags, grace=rule.grace)
        found.append(PageCache(f"PAGE_RULES {rule.pattern!r}", policy, (), {}))
    try:
        resolved = resolve(request.path_info)
    except Resolver404:
        return found
    for policy in view_policies(resolved.func):
        where = f"cache_page on {resolved.view_name or resolved._func_path}"
        found.append(PageCache(where, policy, tuple(resolved.args), dict(resolved.kwargs)))
    return found


def view_policies(view: Any) -> list[PagePolicy]:
    """The ``cache_page`` policies wrapped around ``view``, outermost first.

    Reads the policy ``cache_page`` marks its wrapper with (``cachesweeper_policy``)
    along the ``functools.wraps`` chain (``__wrapped__``), and on a class-based
    view's ``dispatch``, ``get`` and ``head``, where ``method_decorator`` puts it.
    A decorator that does not use ``functools.wraps`` hides the policies under it.
    """
    found: list[PagePolicy] = []
    seen: set[int] = set()
    todo: list[Any] = [view]
    while todo:
        obj = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, functools.partial):
            todo.append(obj.func)
            continue
        policy = getattr(obj, POLICY_ATTRIBUTE, None)
        if isinstance(policy, PagePolicy) and all(policy is not known for known in found):
            found.append(policy)
        view_class = getattr(obj, "view_class", None)
        if isinstance(view_class, type):
            todo += [getattr(view_class, name, None) for name in ("dispatch", "get", "head")]
        todo.append(getattr(obj, "__wrapped__", None))
    return found


def page_entry(
    request: HttpRequest,
    policy: PagePolicy,
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> list[str]:
    """The entry the page cache keeps for this request (an anonymous visitor), described."""
    if policy.only_if is not None and not policy.only_if(request):
        return ["  only_if declines this request: it is never cached"]
    try:
        dependencies = page_dependencies(policy.tags, request, args, kwargs)
    except Exception as error:
        return [f"  could not compute the key: the view's tags raised {error!r}"]
    base = page_key(policy, request, dependencies, "")  # "": an anonymous visitor
    cache = caches[policy.using or conf.CACHE]
    lines = []
    vary = vary_pointer(_get(cache, base))
    key = base
    if vary is not None:
        key = variant_key(base, request, vary)
        values = ", ".join(f"{name}={request.headers.get(name, '')!r}" for name in vary)
        lines.append(f"  varies on {', '.join(vary)}; this variant: {values} (see --header)")
    described = describe(key, cache)
    if _get(cache, key) is None:
        described += why_not_stored(request)
    return lines + ["  " + line for line in described]


# -- describing a dependency -----------------------------------------------------------


def dependency_blocks(
    label: str | None, pks: Sequence[str], tags: Sequence[str]
) -> list[list[str]]:
    """One described block per dependency: a model, its instances, or named tags."""
    if label is None:
        for tag in tags:
            check_tag(tag)
        return describe_dependencies([(tag_name(tag), None) for tag in tags])
    model = find_model(label)
    if not pks:
        return describe_dependencies([(model_name(model), None)])
    attribute = tokens.attribute_for(model)
    found = [
        (instance_name(instance), (attribute, getattr(instance, attribute)) if attribute else None)
        for instance in find_instances(
            model, pks, DEFAULT_DB_ALIAS, "; there is nothing to inspect"
        )
    ]
    return describe_dependencies(found)


def describe_dependencies(
    found: Sequence[tuple[str, tuple[str, Any] | None]],
) -> list[list[str]]:
    """Name, token strategy, current token and when it was last swept, per dependency.

    ``found`` pairs each name with ``(attribute, value)`` for attribute tokens, or
    ``None`` for counters; counters are read, never created.
    """
    counters = _current_counters([name for name, attribute in found if attribute is None])
    blocks = []
    for name, attribute in found:
        lines = [f"dependency     {name} (also its edge tag)"]
        if attribute is not None:
            lines += [
                f"token          attribute {attribute[0]} = {attribute[1]!r} (read from the row)",
                "last swept     when the row last changed: saving it changes the token",
            ]
            blocks.append(lines)
            continue
        token = counters.get(name)
        if token is None:
            lines += [
                "token          counter, none in the version cache (never read since the "
                "cache was emptied, or evicted): the next read creates one and misses",
                "last swept     unknown",
            ]
        else:
            made = when(tokens.made_at(token))
            swept = tokens.swept_at(token)
            lines.append(f"token          counter {token}")
            if swept is None:
                lines.append(
                    f"last swept     not since the counter was created at {made} "
                    "(by the first read after it went missing)"
                )
            else:
                lines.append(f"last swept     {when(swept)} ({time.time() - swept:.0f}s ago)")
        blocks.append(lines)
    return blocks


# -- describing an entry ---------------------------------------------------------------


def describe(key: str, cache: BaseCache) -> list[str]:
    """What ``cache`` holds under ``key``: dependencies, tokens, fresh or stale, expiry."""
    raw = _get(cache, key)
    lines = [f"key            {key}"]
    if raw is None:
        return [
            *lines,
            "entry          none (never stored, expired, evicted, or another cache "
            "alias: see --cache)",
        ]
    vary = vary_pointer(raw)
    if vary is not None:
        return [
            *lines,
            f"entry          a Vary pointer: the page varies on {', '.join(vary)} "
            "and each variant has its own key (inspect --url with --header)",
        ]
    entry = Entry.load(raw)
    if entry is None:
        return [*lines, "entry          not a cachesweeper entry"]
    lines.append(f"content        {_content(entry.payload)}")
    now = time.time()
    current = _current_counters(entry.counters)
    moved = []
    lines.append(f"dependencies   {len(entry.counters) + len(entry.attributes)}")
    for name, token in entry.counters.items():
        now_token = current.get(name)
        if now_token == token:
            verdict = "unchanged"
        else:
            moved.append(name)
            verdict = _moved(now_token)
        lines.append(f"  {name}  counter {token} -> {_or_dash(now_token)}  {verdict}")
    for name, value in entry.attributes.items():
        known, now_value = _current_attribute(name)
        if not known:
            verdict = "cannot check (instance not found)"
        elif now_value == value:
            verdict = "unchanged"
        else:
            moved.append(name)
            verdict = "changed"
        lines.append(f"  {name}  attribute {value!r} -> {now_value!r}  {verdict}")
    if entry.fresh_until is None:
        lines.append("fresh until    no expiry")
    else:
        left = entry.fresh_until - now
        relative = f"in {left:.0f}s" if left >= 0 else f"{-left:.0f}s ago"
        lines.append(f"fresh until    {when(entry.fresh_until)} ({relative})")
    if entry.stale_since is not None:
        lines.append(f"stale since    {when(entry.stale_since)} (a regeneration failed)")
    expired = entry.fresh_until is not None and now >= entry.fresh_until
    if not moved and not expired and entry.stale_since is None:
        lines.append("state          fresh: the next read is a hit")
    else:
        reasons = []
        if moved:
            reasons.append(f"tokens moved ({', '.join(moved)})")
        if expired:
            reasons.append("expired")
        if entry.stale_since is not None:
            reasons.append("marked stale")
        lines.append(
            f"state          stale: {', '.join(reasons)}; the next read re-renders "
            "(or serves this copy while the fragment's or page's grace allows)"
        )
    return lines


def _moved(token: int | None) -> str:
    """Why a stored counter token no longer matches: swept (when), or evicted."""
    if token is None:
        return "counter missing (evicted or flushed)"
    swept = tokens.swept_at(token)
    return "swept" if swept is None else f"swept at {when(swept)}"


def _content(payload: Any) -> str:
    if isinstance(payload, tuple) and len(payload) == len(StoredPage._fields):
        page = StoredPage(*payload)
        age = time.time() - page.stored_at
        return (
            f"page: status {page.status}, {len(page.content)} bytes, ETag {page.etag}, "
            f"stored {age:.0f}s ago"
        )
    if isinstance(payload, str):
        return f"fragment: {len(payload)} characters"
    return f"{type(payload).__name__}"


def _current_counters(names: Iterable[str]) -> dict[str, int]:
    """Current counter tokens, read only (a missing counter is not created)."""
    names = list(names)
    if not names:
        return {}
    try:
        return tokens.read_counters(caches[conf.VERSION_CACHE], names)
    except Exception as error:
        raise InspectionError(f"could not read the version cache: {error}") from None


def _current_attribute(name: str) -> tuple[bool, Any]:
    """The current value of an attribute token ``app_label.model.pk``, if the row exists."""
    try:
        app_label, model_label, pk = name.split(".", 2)
        model = apps.get_model(app_label, model_label)
        attribute = tokens.strategy_for(model)
        row = model._base_manager.filter(pk=unquote(pk)).values_list(attribute, flat=True)
        values = list(row[:1])
    except Exception:
        return False, None
    return (True, values[0]) if values else (False, None)


def _get(cache: BaseCache, key: str) -> Any:
    try:
        return cache.get(key)
    except Exception as error:
        raise InspectionError(f"could not read the cache: {error}") from None


def when(timestamp: float) -> str:
    """A timestamp as UTC wall time, the same in every process's output."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
