"""Busy site (issue 20): field dependencies against model dependencies and django-cacheops.

    python -m benchmarks.busy                    # 1,000 articles, 10,000 operations
    python -m benchmarks.busy --ops 4000 --hits 500

Why: with model dependencies every new comment sweeps every comment list of the site,
so on a site that keeps getting comments almost nothing stays cached. A field
dependency (``testapp.comment.article=5``) is swept only by comments of article 5.

Each article's page shows its comment count and its comment list, each a fragment on
``article.comments.all``. After a warm-up pass over every page (not counted), a seeded
random sequence of operations runs: 95 % page reads of a random article, 5 % new
comments on a random article. Every side gets the identical sequence (its checksum is
printed) in a fresh process with its own SQLite database, against its own redis-server
that this command starts and stops (``tests/servers.py``), flushed after the data is
made: ``used_memory`` after the side less ``used_memory`` after the flush is what
the side stored (and the server's buffers for its connections):

- *field*: cachesweeper as registered (``Comment``: field dependencies, the default);
- *model*: cachesweeper with ``register(Comment, touch=["article"], fields=())``;
- *cacheops*: django-cacheops' ``{% cached_as %}`` on the same QuerySets, in its own
  process because its settings (``CACHEOPS``, its app, its monkey patches of QuerySet)
  would otherwise be in cachesweeper's sides too; cachesweeper's registrations are
  removed there, so its receivers do nothing.

Reported per side: the fragment hit ratio (1 - fragment bodies rendered / fragments
read; checked against the libraries' own counts: cachesweeper's ``fragment_miss``
signal, cacheops' ``cache_read``), page reads per second over the mix (writes' time
included), the mean time and the Redis commands of a new comment, the median time of
one fragment hit (a hit-only loop, in ``--rounds`` small processes per side taken in
turn), Redis commands per hit (``total_commands_processed`` of ``INFO stats``: each is
one round trip, no hit pipelines), and Redis ``used_memory`` and keys after the side.
Ratios and commands are deterministic; times are not (a shared 2-core machine): Redis
and each side run pinned to one CPU (``--cpu``), as ``benchmarks/run`` does, for a
steadier loopback round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIDES = ("field", "model", "cacheops")
ROOT = Path(__file__).resolve().parent.parent

#: The body of both fragments; ``renders.next`` counts the bodies rendered (misses).
COUNT_BODY = "<p>{{ article.comments.count }} comments{{ renders.next }}</p>"
LIST_BODY = (
    "<ol>{% for comment in article.comments.all %}"
    '<li id="c{{ comment.pk }}">{{ comment.text|linebreaksbr }}</li>'
    "{% endfor %}</ol>{{ renders.next }}"
)
#: Per library: the load tag, the opening tag of a fragment on the comments, the end tag.
TAGS = {
    "cachesweeper": (
        "{% load cachesweeper %}",
        '{% cachesweeper article.comments.all 600 "NAME" %}',
        "{% endcachesweeper %}",
    ),
    "cacheops": (
        "{% load cacheops %}",
        '{% cached_as article.comments.all 600 "NAME" %}',
        "{% endcached_as %}",
    ),
}


def sources(library: str) -> tuple[str, str]:
    """The page (title, count fragment, list fragment) and the list fragment alone."""
    load, opening, end = TAGS[library]
    count = opening.replace("NAME", "count") + COUNT_BODY + end
    listed = opening.replace("NAME", "list") + LIST_BODY + end
    return f"{load}<h1>{{{{ article.title }}}}</h1>{count}{listed}", load + listed


class Counter:
    """``{{ renders.next }}``: adds one each time a fragment body is rendered."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> str:
        self.value += 1
        return ""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.busy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--comments", type=int, default=3, help="comments per article at start")
    parser.add_argument("--ops", type=int, default=10000, help="operations in the mix")
    parser.add_argument("--writes", type=float, default=0.05, help="share of new comments")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--hits", type=int, default=1000, help="calls of the hit-only loop")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved hit-only processes per side"
    )
    parser.add_argument(
        "--cpu", type=int, default=0, help="run Redis and the sides on this CPU; -1: no pinning"
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side's process
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def operations(args: argparse.Namespace) -> list[tuple[bool, int]]:
    """The seeded mix: (is a new comment, index of the article), the same for every side."""
    rng = random.Random(args.seed)
    return [(rng.random() < args.writes, rng.randrange(args.articles)) for _ in range(args.ops)]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.side:
        print(json.dumps(run_side(args)))
        return 0
    from benchmarks.harness import pin
    from tests.servers import RedisServer

    ops = operations(args)
    digest = hashlib.sha256(repr(ops).encode()).hexdigest()[:12]
    writes = sum(write for write, _ in ops)
    print(
        f"{args.articles} articles, {args.comments} comments each; {len(ops)} operations "
        f"({len(ops) - writes} page reads, {writes} new comments; seed {args.seed}, "
        f"sequence {digest}); hit loop {args.hits}; load {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, dict[str, Any]] = {}
    for side in SIDES:  # a fresh redis-server each: its memory figures start from empty
        server = RedisServer()
        server.start()
        try:
            if args.cpu >= 0 and server.pid:
                pin(server.pid, {args.cpu})
            results[side] = _spawn(side, server.url, argv or sys.argv[1:])
        finally:
            server.close()
        assert results[side]["sequence"] == digest, results[side]
    hits = _hit_rounds(args, argv or sys.argv[1:])
    _report(results, hits)
    return 0


def _hit_rounds(args: argparse.Namespace, argv: list[str]) -> dict[str, list[float]]:
    """µs per fragment hit of each side, from ``--rounds`` rounds of fresh processes.

    Why: the sides' mixes run one after the other, a minute apart, and the load of a
    shared machine moves in a minute more than the difference between two hits. Small
    hit-only processes (10 articles, no mix) taken in turn, side after side, share the
    moments of load; the median of the rounds is reported.
    """
    from benchmarks.harness import pin
    from tests.servers import RedisServer

    found: dict[str, list[float]] = {side: [] for side in SIDES}
    server = RedisServer()
    server.start()
    try:
        if args.cpu >= 0 and server.pid:
            pin(server.pid, {args.cpu})
        for _ in range(args.rounds):
            for side in SIDES:
                result = _spawn(side, server.url, [*argv, "--articles", "10", "--ops", "0"])
                found[side].append(result["hit_us"])
    finally:
        server.close()
    return found


def _spawn(side: str, url: str, argv: list[str]) -> dict[str, Any]:
    """Run one side in a fresh process (own database, own settings); its JSON result."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
    }
    if side == "cacheops":
        env["BENCH_CACHEOPS_REDIS"] = url
    else:
        env.update(BENCH_CACHE_KIND="redis", BENCH_CACHE_LOCATION=url)
    command = [sys.executable, "-m", "benchmarks.busy", *argv, "--side", side, "--redis", url]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"side {side} failed:\n{done.stderr}")
    sys.stderr.write(done.stderr)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _report(results: dict[str, dict[str, Any]], hits: dict[str, list[float]]) -> None:
    labels = {
        "field": "cachesweeper, field dependencies",
        "model": "cachesweeper, model dependencies",
        "cacheops": "django-cacheops `{% cached_as %}`",
    }
    print(
        "| side | fragment hit ratio (bodies rendered) | page reads/s "
        "| µs per fragment hit: median (range) of rounds "
        "| Redis commands per hit | µs per new comment (Redis commands) "
        "| Redis used_memory after (flushed: before) | keys |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for side, found in results.items():
        times = hits[side] or [found["hit_us"]]
        print(
            f"| {labels[side]} | {found['hit_ratio']:.3f} ({found['fragments_rendered']}) "
            f"| {found['pages_per_second']:.0f} "
            f"| {statistics.median(times):.0f} ({min(times):.0f}-{max(times):.0f}) "
            f"| {found['commands_per_hit']:g} "
            f"| {found['write_us']:.0f} ({found['commands_per_write']:g}) "
            f"| {found['used_memory']:,} B ({found['used_memory_empty']:,} B) "
            f"| {found['keys']:,} |"
        )


def run_side(args: argparse.Namespace) -> dict[str, Any]:
    """Set up the data, run the warm-up, the mix and the hit loop for ``args.side``."""
    import django

    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    django.setup()
    import redis
    from django.core.management import call_command
    from django.template import engines

    from cachesweeper import registry
    from tests.helpers import registered
    from tests.testapp.models import Article, Comment

    call_command("migrate", run_syncdb=True, verbosity=0)
    Article.objects.bulk_create(Article(title=f"Article {n}") for n in range(args.articles))
    ids = list(Article.objects.order_by("pk").values_list("pk", flat=True))
    Comment.objects.bulk_create(
        Comment(article_id=pk, text=f"Comment {n} on {pk}.\nSecond line.")
        for pk in ids
        for n in range(args.comments)
    )
    client = redis.Redis.from_url(args.redis)
    client.flushall()
    empty = client.info("memory")["used_memory"]
    page_source, hit_source = sources("cacheops" if args.side == "cacheops" else "cachesweeper")
    page = engines["django"].from_string(page_source)
    renders = Counter()

    def read(pk: int) -> str:
        """One page read: load the article, render its page (no middleware: the cache's part)."""
        return page.render({"article": Article.objects.get(pk=pk), "renders": renders})

    misses = _count_misses(args.side)
    ops = operations(args)
    registration: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if args.side == "cacheops":
        for model in (Article, Comment):
            registry.remove(model)  # cachesweeper's receivers find no registration
    elif args.side == "model":
        registration = registered(Comment, touch=["article"], fields=())
    with registration:
        for pk in ids:  # warm-up: every page once
            read(pk)
        renders.value = misses[0] = 0
        seconds = write_seconds = 0.0
        write_commands = 0
        for write, index in ops:
            if write:
                before = client.info("stats")["total_commands_processed"]
                start = time.perf_counter()
                Comment.objects.create(article_id=ids[index], text="A new comment.")
                write_seconds += time.perf_counter() - start
                write_commands += client.info("stats")["total_commands_processed"] - before - 1
            else:
                start = time.perf_counter()
                read(ids[index])
                seconds += time.perf_counter() - start
        seconds += write_seconds
        reads = sum(not write for write, _ in ops)
        rendered, reported = renders.value, misses[0]
        assert rendered == reported, (rendered, reported)
        hit_us, commands = _hit_loop(args, client, Article.objects.get(pk=ids[0]), hit_source)
    memory = client.info("memory")["used_memory"]
    return {
        "sequence": hashlib.sha256(repr(ops).encode()).hexdigest()[:12],
        "hit_ratio": 1 - rendered / (2 * reads) if reads else 0.0,
        "fragments_rendered": rendered,
        "pages_per_second": reads / seconds if reads else 0.0,
        "hit_us": hit_us,
        "write_us": write_seconds / max(len(ops) - reads, 1) * 1e6,
        "commands_per_write": write_commands / max(len(ops) - reads, 1),
        "commands_per_hit": commands,
        "used_memory": memory,
        "used_memory_empty": empty,
        "keys": client.dbsize(),
    }


def _count_misses(side: str) -> list[int]:
    """A one-item list that the library's own miss notifications add to."""
    misses = [0]

    def cachesweeper_miss(**kwargs: Any) -> None:
        misses[0] += 1

    def cacheops_read(hit: bool, **kwargs: Any) -> None:
        misses[0] += not hit

    if side == "cacheops":
        from cacheops.signals import cache_read  # type: ignore[import-untyped]

        cache_read.connect(cacheops_read, weak=False)
    else:
        from cachesweeper.signals import fragment_miss

        fragment_miss.connect(cachesweeper_miss, weak=False)
    return misses


def _hit_loop(
    args: argparse.Namespace, client: Any, article: Any, source: str
) -> tuple[float, float]:
    """Median µs of one fragment hit (the list fragment alone) and Redis commands per hit."""
    from django.template import engines

    fragment = engines["django"].from_string(source)
    context = {"article": article, "renders": Counter()}
    fragment.render(context)  # stored
    fragment.render(context)
    context["renders"] = counter = Counter()
    before = client.info("stats")["total_commands_processed"]
    times = []
    for _ in range(args.hits):
        start = time.perf_counter()
        fragment.render(context)
        times.append(time.perf_counter() - start)
    after = client.info("stats")["total_commands_processed"]
    assert counter.value == 0, "the hit loop rendered the body: not a hit"
    # The first INFO is counted once it has run: one command that is not a hit's.
    return statistics.median(times) * 1e6, (after - before - 1) / args.hits


if __name__ == "__main__":
    sys.exit(main())
