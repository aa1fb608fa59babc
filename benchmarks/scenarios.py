"""The seven scenarios: cachesweeper and the Django built-in, side by side, per cache kind.

Each scenario function takes the :class:`~benchmarks.harness.Env` of one cache kind,
counts round trips on the counting backend, times on the stock backend, and adds
result rows (with the target and whether it was met) to the env.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.cache.utils import make_template_fragment_key
from django.core.handlers.wsgi import WSGIHandler
from django.template import engines
from django.test import override_settings

import cachesweeper
from benchmarks import views
from benchmarks.harness import Env, Row, WSGIApp, call, fmt_time, template
from benchmarks.settings import STARTPROJECT_MIDDLEWARE
from cachesweeper import tokens
from cachesweeper.dependencies import resolve
from cachesweeper.fragments import fragment_key
from cachesweeper.templatetags.cachesweeper import CacheSweeperNode
from cachesweeper.wsgi import PageCacheMiddleware as WSGIPageCache
from tests.testapp.models import Article, Comment, Page

# -- data ----------------------------------------------------------------------------


@dataclass
class Data:
    """Rows the scenarios render, loaded once (related objects fetched up front)."""

    comment: Comment
    comments: list[Comment]
    page: Page
    article: Article


def make_data(list_size: int = 100) -> Data:
    article = Article.objects.create(title="cache invalidation, the hard part")
    text = "Key-based expiry means never deleting anything.\nOld entries simply age out."
    Comment.objects.bulk_create(
        Comment(article=article, text=f"{text} ({number})") for number in range(list_size)
    )
    comments = list(Comment.objects.select_related("article").order_by("pk"))
    page = Page.objects.create(title="About")
    return Data(comments[0], comments, page, article)


# -- templates -----------------------------------------------------------------------

#: The body of one comment fragment: a few fields and filters, about 400 bytes.
COMMENT_BODY = (
    '<article class="comment" id="c{{ comment.pk }}">'
    "<h3>Re: {{ comment.article.title|title }}</h3>"
    "<p>{{ comment.text|linebreaksbr }}</p>"
    "<footer>#{{ comment.pk }} · {{ comment.text|wordcount }} words · "
    "{{ comment.text|truncatewords:6 }} · {{ comment.article.title|upper }}</footer>"
    "</article>"
)
PAGE_BODY = "<h1>{{ page.title }}</h1><p>{{ page.title|lower }} · {{ page.pk }}</p>" * 4

CS_COMMENT = (
    '{% load cachesweeper %}{% cachesweeper comment 600 "comment" %}'
    + COMMENT_BODY
    + "{% endcachesweeper %}"
)
DJ_COMMENT = "{% load cache %}{% cache 600 comment comment.pk %}" + COMMENT_BODY + "{% endcache %}"

CS_PAGE = (
    '{% load cachesweeper %}{% cachesweeper page 600 "page" %}'
    + PAGE_BODY
    + "{% endcachesweeper %}"
)
DJ_PAGE = (
    "{% load cache %}{% cache 600 page page.pk page.updated_at %}" + PAGE_BODY + "{% endcache %}"
)

CS_LIST = (
    '{% load cachesweeper %}{% cachesweeper_for comment in comments 600 "item" %}'
    + COMMENT_BODY
    + "{% endcachesweeper_for %}"
)
DJ_LIST = (
    "{% load cache %}{% for comment in comments %}{% cache 600 item comment.pk %}"
    + COMMENT_BODY
    + "{% endcache %}{% endfor %}"
)

CS_COLD = (
    '{% load cachesweeper %}{% cachesweeper comment 600 "cold" n %}'
    + COMMENT_BODY
    + "{% endcachesweeper %}"
)
DJ_COLD = "{% load cache %}{% cache 600 cold comment.pk n %}" + COMMENT_BODY + "{% endcache %}"
UNCACHED = COMMENT_BODY

#: The fragment every sweep entry is a copy of; one line, so its place is fixed.
CS_SWEEP = (
    '{% load cachesweeper %}{% cachesweeper article 600 "sweep" i %}'
    "{{ article.title }} #{{ i }}{% endcachesweeper %}"
)


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


# -- 1, 2: fragment hits ---------------------------------------------------------------


def fragment_hit_counter(env: Env, data: Data) -> None:
    """1. A fragment hit with a counter token: entry and token in one ``get_many``."""
    ours, theirs = template(CS_COMMENT), template(DJ_COMMENT)
    context = {"comment": data.comment}
    _fragment_hit(
        env,
        "1. fragment hit, counter tokens",
        "hit",
        lambda: ours(context),
        lambda: theirs(context),
        "Django {% cache %}",
        limit=1.15,
    )


def fragment_hit_attribute(env: Env, data: Data) -> None:
    """2. A fragment hit with an attribute token (``updated_at``): no token to fetch."""
    ours, theirs = template(CS_PAGE), template(DJ_PAGE)
    context = {"page": data.page}
    _fragment_hit(
        env,
        "2. fragment hit, attribute tokens",
        "hit",
        lambda: ours(context),
        lambda: theirs(context),
        "Django {% cache %} varying on updated_at",
        limit=1.05,
    )


def _fragment_hit(
    env: Env,
    scenario: str,
    what: str,
    ours: Callable[[], str],
    theirs: Callable[[], str],
    baseline: str,
    limit: float,
) -> None:
    with env.stock():
        if ours() != theirs():
            raise AssertionError(f"{scenario}: the two sides render different HTML")
    key = scenario.split(".")[0]
    ours_calls = env.count(f"{key}:cachesweeper", ours)
    theirs_calls = env.count(f"{key}:django", theirs)
    timings = env.time({f"{key}:cachesweeper": ours, f"{key}:django": theirs})
    ours_t, theirs_t = timings[f"{key}:cachesweeper"].median, timings[f"{key}:django"].median
    ratio = _ratio(ours_t, theirs_t)
    env.add(
        Row(
            scenario, env.label, what, fmt_time(ours_t), baseline, fmt_time(theirs_t), ratio,
            ours_calls, theirs_calls, f"1 round trip; time ≤ {limit}x",
            len(ours_calls) == 1 and ratio <= limit,
        )
    )  # fmt: skip


# -- 3: a list of 100 -------------------------------------------------------------------


def fragment_list(env: Env, data: Data) -> None:
    """3. 100 cached items: ``{% cachesweeper_for %}`` against ``{% cache %}`` in a loop."""
    ours_render, theirs_render = template(CS_LIST), template(DJ_LIST)
    context = {"comments": data.comments}

    def ours() -> str:
        return ours_render(context)

    def theirs() -> str:
        return theirs_render(context)

    with env.stock():
        if ours() != theirs():
            raise AssertionError("3: the two sides render different HTML")
    ours_calls = env.count("3:cachesweeper", ours)
    theirs_calls = env.count("3:django", theirs)
    timings = env.time({"3:cachesweeper": ours, "3:django": theirs})
    ours_t, theirs_t = timings["3:cachesweeper"].median, timings["3:django"].median
    ratio = _ratio(ours_t, theirs_t)
    env.add(
        Row(
            f"3. list of {len(data.comments)} cached items", env.label, "hit",
            fmt_time(ours_t), "Django {% cache %} inside {% for %}", fmt_time(theirs_t), ratio,
            ours_calls, theirs_calls, "1 round trip; time ≤ 0.2x",
            len(ours_calls) == 1 and ratio <= 0.2,
        )
    )  # fmt: skip


# -- 4: sweeps -----------------------------------------------------------------------------

_BATCH = 10_000


def sweep_cost(env: Env, data: Data, sizes: list[int], samples: int) -> None:
    """4. The cost of a sweep with N entries depending on the swept object.

    Each size N gets its own article with N entries depending on it, and all of them
    are in the cache together; the sweeps of the articles are then timed interleaved
    (10, 10,000, 1,000,000, 10, ...), so every size meets the same server state
    (including memcached's hash-table growth after a million writes) and the same
    noise. Entries are independent of the token (the token vector lives inside each
    entry), so an article's N entries are N copies of one really rendered entry under
    N real fragment keys, written with ``set_many`` in batches. Before each timed sweep
    the article's counter is put back (untimed) to the value its entries were stored
    with, so every timed sweep really invalidates N live entries; the library itself
    never does that.

    Django's built-in has no dependency tracking: the closest a user gets is deleting
    the N fragment keys (``make_template_fragment_key`` + ``delete_many``), which means
    tracking them. Each of its samples re-creates the N entries first (untimed); it is
    measured up to :data:`DJANGO_DELETE_LIMIT` keys (a million takes about a minute).
    """
    compiled: Any = engines["django"].from_string(CS_SWEEP)  # the backend's Template wrapper
    render = compiled.render
    (node,) = compiled.template.nodelist.get_nodes_by_type(CacheSweeperNode)
    place = node.place.text  # the fragment's identity: where it is written, a digest of its body
    swept: dict[int, tuple[Article, str, int]] = {}
    with env.stock():
        cache = caches["default"]
        for size in sizes:
            article = Article.objects.create(title=f"swept with {size} entries")
            render({"article": article, "i": 0})
            raw = cache.get(fragment_key(place, resolve(article), ["sweep", 0]))
            if raw is None:
                raise AssertionError("4: the sweep fragment's entry is not where it was expected")
            name = resolve(article)[0].name
            token = tokens.read_counters(cache, [name])[name]
            started = time.perf_counter()
            for start in range(1, size, _BATCH):
                batch = range(start, min(size, start + _BATCH))
                keys = (fragment_key(place, resolve(article), ["sweep", i]) for i in batch)
                cache.set_many(dict.fromkeys(keys, raw), 3600)
            env.extra[f"4:setup_seconds:{size}"] = round(time.perf_counter() - started, 2)
            swept[size] = (article, tokens.token_key(name), token)
        time.sleep(2)  # let the server settle (memcached grows its hash table in the background)
        ours_times = _sweep_samples(cache, swept, samples)
        for _, key, token in swept.values():
            cache.set(key, token, None)
        theirs_times = {
            size: _delete_samples(cache, size, samples) if size <= DJANGO_DELETE_LIMIT else None
            for size in sizes
        }
    calls = {size: _sweep_calls(env, render, size, *swept[size]) for size in sizes}
    flat = max(ours_times.values()) / min(ours_times.values())
    env.extra["4:flatness"] = round(flat, 3)
    for size in sizes:
        env.timings[f"4:cachesweeper:{size}"] = {"median_us": round(ours_times[size] * 1e6, 3)}
        theirs = theirs_times[size]
        env.timings[f"4:django:{size}"] = {
            "median_us": None if theirs is None else round(theirs * 1e6, 3)
        }
        env.add(
            Row(
                "4. sweep", env.label, f"{size:,} entries depend on the object",
                fmt_time(ours_times[size]), "delete_many of the N fragment keys",
                "not measured" if theirs is None else fmt_time(theirs),
                None if theirs is None else _ratio(ours_times[size], theirs),
                calls[size], [f"delete_many ({size:,} keys)"],
                "1 round trip; flat: largest/smallest ≤ 1.2",
                len(calls[size]) == 1 and flat <= 1.2,
                note=f"largest/smallest = {flat:.2f}",
            )
        )  # fmt: skip


#: Largest number of keys the Django side of scenario 4 deletes.
DJANGO_DELETE_LIMIT = 10_000


def _sweep_samples(
    cache: Any, swept: dict[int, tuple[Article, str, int]], count: int
) -> dict[int, float]:
    """Median seconds of ``invalidate_cache_for`` per size, sizes interleaved."""
    times: dict[int, list[float]] = {size: [] for size in swept}
    for _ in range(count):
        for size, (article, key, token) in swept.items():
            cache.set(key, token, None)  # the entries are live again
            started = time.perf_counter()
            cachesweeper.invalidate_cache_for(article)
            times[size].append(time.perf_counter() - started)
    return {size: statistics.median(values) for size, values in times.items()}


def _delete_samples(cache: Any, size: int, count: int) -> float:
    """Median seconds of deleting ``size`` Django fragment keys, re-created each time."""
    keys = [make_template_fragment_key("sweep", [i]) for i in range(size)]
    count = max(1, min(count, 200_000 // size))
    times = []
    for _ in range(count):
        for start in range(0, size, _BATCH):
            cache.set_many(dict.fromkeys(keys[start : start + _BATCH], "x" * 60), 3600)
        started = time.perf_counter()
        cache.delete_many(keys)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _sweep_calls(
    env: Env,
    render: Callable[[dict[str, Any]], str],
    size: int,
    article: Article,
    token_key: str,
    token: int,
) -> list[str]:
    """The sweep's cache calls; also checks an entry was live before and stale after."""
    with env.counting():
        cache = caches["default"]
        cache.set(token_key, token, None)
        cache.reset_calls()  # type: ignore[attr-defined]
        render({"article": article, "i": size - 1})
        if list(cache.calls) != ["get_many"]:  # type: ignore[attr-defined]
            raise AssertionError(f"4: entry {size - 1} was not live before the sweep")
        cache.reset_calls()  # type: ignore[attr-defined]
        cachesweeper.invalidate_cache_for(article)
        calls = list(cache.calls)  # type: ignore[attr-defined]
        cache.reset_calls()  # type: ignore[attr-defined]
        # Loaded again, as the next request would: an instance loaded before a sweep
        # renders without being stored.
        render({"article": Article.objects.get(pk=article.pk), "i": size - 1})
        if "set_many" not in cache.calls:  # type: ignore[attr-defined]
            raise AssertionError(f"4: entry {size - 1} was still served after the sweep")
    env.calls[f"4:cachesweeper:{size}"] = calls
    return calls


# -- 5: dog-pile ----------------------------------------------------------------------------


def dog_pile(env: Env, data: Data, concurrency: int = 50) -> None:
    """5. ``concurrency`` simultaneous requests for a page whose view takes 200 ms."""
    app = WSGIHandler()
    results: dict[str, dict[str, Any]] = {}
    with env.stock():
        cache = caches["default"]
        cases: list[tuple[str, str, Callable[[], None]]] = [
            ("swept, grace=30", "/slow/grace/", lambda: cachesweeper.invalidate_tag("slow")),
            ("swept, no grace", "/slow/no-grace/", lambda: cachesweeper.invalidate_tag("slow")),
            ("cold (never cached), grace=30", "/slow/grace/", cache.clear),
            ("expired (Django cache_page)", "/slow/django/", cache.clear),
        ]
        for label, path, invalidate in cases:
            call(app, path)  # a cached copy exists: the state before the sweep
            invalidate()
            results[label] = _burst(app, path, concurrency)
    env.extra["5:dog_pile"] = results
    expired = results["expired (Django cache_page)"]
    for label, limit in (
        ("swept, grace=30", "exactly 1 view call"),
        ("swept, no grace", "report"),
        ("cold (never cached), grace=30", "report"),
    ):
        result = results[label]
        env.add(
            Row(
                f"5. dog-pile: {concurrency} concurrent requests, 200 ms view", env.label, label,
                _view_calls(result["view_calls"]), "Django cache_page, expired",
                _view_calls(expired["view_calls"]), None, None, None, limit,
                result["view_calls"] == 1 if label == "swept, grace=30" else None,
                note=(
                    f"wall {fmt_time(result['wall_seconds'])}, "
                    f"p50 {fmt_time(result['p50_seconds'])}, "
                    f"max {fmt_time(result['max_seconds'])} "
                    f"(Django: wall {fmt_time(expired['wall_seconds'])})"
                ),
            )
        )  # fmt: skip


def _view_calls(count: int) -> str:
    return f"{count} view call" + ("" if count == 1 else "s")


def _burst(app: WSGIApp, path: str, concurrency: int) -> dict[str, Any]:
    """Fire ``concurrency`` requests at once; count view calls, time the answers."""
    views.VIEW_CALLS.clear()
    barrier = threading.Barrier(concurrency + 1)
    latencies: list[float] = []
    statuses: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        started = time.perf_counter()
        status, _ = call(app, path)
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "view_calls": sum(views.VIEW_CALLS.values()),
        "wall_seconds": wall,
        "p50_seconds": statistics.median(latencies),
        "max_seconds": max(latencies),
        "non_200": sum(1 for status in statuses if not status.startswith("200")),
    }


# -- 6: page hits -----------------------------------------------------------------------------


def handler(middleware: list[str]) -> WSGIHandler:
    """Django's WSGI application with ``middleware`` (loaded once, at creation)."""
    with override_settings(MIDDLEWARE=middleware):
        return WSGIHandler()


def floor_app(kind: str, location: str) -> tuple[WSGIApp, Callable[[], None]]:
    """The floor: a bare WSGI app answering with one value from the cache server.

    With ``locmem`` (no server) the value comes from a dict: the floor of the floor.
    """
    client: Any
    if kind == "locmem":
        client = _DictClient()
    elif kind == "memcached":
        host, port = location.split(":")
        from pymemcache.client.base import Client

        client = Client((host, int(port)))
    else:
        import redis

        host, port = location.replace("redis://", "").split("/")[0].split(":")
        client = redis.Redis(host=host, port=int(port), db=0)
    headers = [("Content-Type", "text/html; charset=utf-8")]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body: bytes = client.get("floor:page")
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def prepare() -> None:
        client.set("floor:page", views.BODY.encode())

    return app, prepare


class _DictClient(dict[str, bytes]):
    def set(self, key: str, value: bytes) -> None:
        self[key] = value


def page_hits(env: Env, data: Data) -> None:
    """6. Page-cache hits through an in-process WSGI call loop."""
    site_rules = {"PAGE_RULES": [("/site", 600, 0)]}
    django_stack = handler(STARTPROJECT_MIDDLEWARE)
    django_site = handler(
        [
            "django.middleware.cache.UpdateCacheMiddleware",
            *STARTPROJECT_MIDDLEWARE,
            "django.middleware.cache.FetchFromCacheMiddleware",
        ]
    )
    with override_settings(CACHESWEEPER=site_rules):
        ours_site = handler(
            [*STARTPROJECT_MIDDLEWARE, "cachesweeper.middleware.PageCacheMiddleware"]
        )
    edge_stack = handler(["cachesweeper.middleware.EdgeMiddleware", *STARTPROJECT_MIDDLEWARE])
    wsgi_cache = WSGIPageCache(edge_stack, [("/wsgi", 600, 0)], "default")
    no_copies = WSGIPageCache(edge_stack, [("/wsgi", 600, 0)], "default", local_copies=0)
    floor, prepare_floor = floor_app(env.base_kind, env.location)
    prepare_floor()

    sides: dict[str, tuple[WSGIApp, str]] = {
        "django_cache_page": (django_stack, "/django/page/"),
        "cachesweeper_cache_page": (django_stack, "/cs/page/"),
        "django_site_cache": (django_site, "/site/page/"),
        "cachesweeper_site_cache": (ours_site, "/site/page/"),
        "cachesweeper_wsgi_cache": (wsgi_cache, "/wsgi/page/"),
        "cachesweeper_wsgi_cache_no_copies": (no_copies, "/wsgi/page/"),
        "floor": (floor, "/"),
    }

    def runner(app: WSGIApp, path: str) -> Callable[[], object]:
        return lambda: call(app, path)

    funcs = {name: runner(app, path) for name, (app, path) in sides.items()}
    with override_settings(CACHESWEEPER=site_rules):
        with env.stock():
            for name, func in funcs.items():
                func()
                status, body = call(*sides[name])
                if not status.startswith("200") or body != views.BODY.encode():
                    raise AssertionError(f"6: {name} answered {status} {body[:60]!r}")
        calls = {
            name: env.count(f"6:{name}", func) for name, func in funcs.items() if name != "floor"
        }
        calls["floor"] = ["get (raw client)"]
        timings = env.time({f"6:{name}": func for name, func in funcs.items()})
    median = {name: timings[f"6:{name}"].median for name in funcs}
    per_second = {name: 1 / seconds for name, seconds in median.items()}
    env.extra["6:requests_per_second"] = {name: round(rate) for name, rate in per_second.items()}

    def rate(name: str) -> str:
        return f"{per_second[name]:,.0f} req/s ({fmt_time(median[name])})"

    comparisons = [
        ("cachesweeper cache_page", "cachesweeper_cache_page", "Django cache_page",
         "django_cache_page", "report", None),
        ("site-wide PageCacheMiddleware", "cachesweeper_site_cache",
         "Django UpdateCache/FetchFromCache middleware", "django_site_cache", "report", None),
        ("WSGI page cache", "cachesweeper_wsgi_cache", "Django cache_page",
         "django_cache_page", "throughput ≥ 3x", 3.0),
        ("WSGI page cache", "cachesweeper_wsgi_cache", "floor: bare WSGI app, one cache GET",
         "floor", "throughput ≥ 0.5x", 0.5),
        ("WSGI page cache, local_copies=0", "cachesweeper_wsgi_cache_no_copies",
         "Django cache_page", "django_cache_page", "report", None),
        ("WSGI page cache, local_copies=0", "cachesweeper_wsgi_cache_no_copies",
         "floor: bare WSGI app, one cache GET", "floor", "report", None),
    ]  # fmt: skip
    for what, ours, baseline, theirs, target, limit in comparisons:
        ratio = per_second[ours] / per_second[theirs]
        env.add(
            Row(
                "6. page hit (in-process WSGI loop)", env.label, what, rate(ours), baseline,
                rate(theirs), ratio, calls[ours], calls[theirs], target,
                None if limit is None else ratio >= limit, note="ratio = throughput ratio",
            )
        )  # fmt: skip


# -- 7: cold render ------------------------------------------------------------------------------


def cold_render(env: Env, data: Data) -> None:
    """7. First render of a fragment (its entry is missing) against no caching at all."""
    ours_render, theirs_render, plain = template(CS_COLD), template(DJ_COLD), template(UNCACHED)
    numbers = itertools.count()  # a new vary-on value each call: always a miss

    def ours() -> str:
        return ours_render({"comment": data.comment, "n": next(numbers)})

    def theirs() -> str:
        return theirs_render({"comment": data.comment, "n": next(numbers)})

    def uncached() -> str:
        return plain({"comment": data.comment})

    ours_calls = env.count("7:cachesweeper", ours)
    theirs_calls = env.count("7:django", theirs)
    timings = env.time({"7:cachesweeper": ours, "7:django": theirs, "7:uncached": uncached})
    ours_t, theirs_t = timings["7:cachesweeper"].median, timings["7:django"].median
    plain_t = timings["7:uncached"].median
    env.extra["7:overhead_us"] = {
        "cachesweeper": round((ours_t - plain_t) * 1e6, 1),
        "django": round((theirs_t - plain_t) * 1e6, 1),
    }
    for what, seconds, calls, good in (
        ("first render (miss): cachesweeper", ours_t, ours_calls,
         ours_calls == ["get_many", "set_many"]),
        ("first render (miss): Django {% cache %}", theirs_t, theirs_calls, None),
    ):  # fmt: skip
        env.add(
            Row(
                "7. cold render overhead", env.label, what, fmt_time(seconds),
                "the same template, uncached", fmt_time(plain_t), _ratio(seconds, plain_t),
                calls, [], "report; ≤ 1 read + 1 write", good,
                note=f"overhead {fmt_time(seconds - plain_t)} per fragment",
            )
        )  # fmt: skip
    env.add(
        Row(
            "7. cold render overhead", env.label, "cachesweeper miss vs Django miss",
            fmt_time(ours_t), "Django {% cache %} miss", fmt_time(theirs_t),
            _ratio(ours_t, theirs_t), ours_calls, theirs_calls, "report", None,
        )
    )  # fmt: skip
