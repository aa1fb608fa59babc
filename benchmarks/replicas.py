"""A Redis primary with a read replica: stale reads after a sweep, and what a hit costs.

    python -m benchmarks.replicas                    # 10,000 cycles per backend and side
    python -m benchmarks.replicas --cycles 2000 --hits 2000 --lag 0.001

Issue 18's replica figures. A primary and a replica (``--replicaof``, on
loopback: the replica lags by the few hundred microseconds replication takes)
back Django's ``RedisCache`` and django-redis with ``LOCATION = [primary,
replica]``, as users configure them; both backends send reads to the replica.

*Write-then-read cycles.* Each cycle saves an article (its ``post_save``
sweep bumps the token on the primary) and at once renders a fragment on it;
a cycle is *stale* when the fragment shows the title from before the save.
Two sides run the same cycles: *cachesweeper* (its reader reads entries and
tokens from the primary, ``reads.py``) and *replica reads* (the backend's own
``get_many``, which goes to the replica: what cachesweeper did before). The
cycles run twice: with the replica replicating directly (loopback: its lag is
the few hundred microseconds replication takes), and through a proxy that
holds the primary's stream back ``--lag`` seconds (a busy or distant replica).

*Hits.* The median time of a fragment hit with ``LOCATION = [primary,
replica]`` against the same hit with ``LOCATION = primary`` alone (target:
no slower than 1.2x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

BACKENDS = {
    "redis": "django.core.cache.backends.redis.RedisCache",
    "django_redis": "django_redis.cache.RedisCache",
}
FRAGMENT = (
    "{% load cachesweeper %}{% cachesweeper article 600 %}{{ article.title }}{% endcachesweeper %}"
)
#: Where ``cachesweeper.reads`` keeps a cache object's reader (set to force one).
READER = "_cachesweeper_reader"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.replicas", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cycles", type=int, default=10_000, help="write-then-read cycles")
    parser.add_argument("--hits", type=int, default=5_000, help="timed hits per side")
    parser.add_argument(
        "--lag", type=float, default=0.0005, help="seconds the lagging replica's link adds"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    django.setup()
    from django.core.management import call_command

    from tests.reliability.proxy import CuttableProxy
    from tests.servers import LOOPBACK, RedisServer

    call_command("migrate", run_syncdb=True, verbosity=0)
    with RedisServer() as primary:
        link = CuttableProxy(LOOPBACK, primary.port, delay=args.lag)
        replica = RedisServer(extra_args=["--replicaof", LOOPBACK, str(primary.port)])
        lagging = RedisServer(extra_args=["--replicaof", LOOPBACK, str(link.port)])
        with replica, lagging:
            _wait_in_sync(primary.port, replica.port)
            _wait_in_sync(primary.port, lagging.port)
            print(f"{'backend':<14}{'replica':<12}{'side':<16}{'cycles':>8}{'stale':>8}")
            for kind, backend in BACKENDS.items():
                for label, server in (("direct", replica), (f"+{args.lag * 1e3:g} ms", lagging)):
                    location = [
                        f"redis://{LOOPBACK}:{primary.port}/0",
                        f"redis://{LOOPBACK}:{server.port}/0",
                    ]
                    for side in ("cachesweeper", "replica reads"):
                        forced = side == "replica reads"
                        stale = cycles(backend, location, args.cycles, forced=forced)
                        print(f"{kind:<14}{label:<12}{side:<16}{args.cycles:>8}{stale:>8}")
            print()
            header = f"{'hit, primary + replica':>24}{'hit, primary alone':>20}{'ratio':>8}"
            print(f"{'backend':<14}{header}")
            for kind, backend in BACKENDS.items():
                both = [
                    f"redis://{LOOPBACK}:{primary.port}/0",
                    f"redis://{LOOPBACK}:{replica.port}/0",
                ]
                alone = f"redis://{LOOPBACK}:{primary.port}/0"
                with_replica, without = hit_times(backend, both, alone, args.hits)
                print(
                    f"{kind:<14}{with_replica * 1e6:>21.1f} µs{without * 1e6:>17.1f} µs"
                    f"{with_replica / without:>7.2f}x"
                )
        link.close()
    return 0


def cycles(backend: str, location: list[str], count: int, *, forced: bool) -> int:
    """Save, then render at once, ``count`` times: how often the old title was shown."""
    from django.core.cache import caches
    from django.template import engines
    from django.test import override_settings

    from cachesweeper import reads
    from tests.testapp.models import Article

    template = engines["django"].from_string(FRAGMENT)
    with override_settings(CACHES={"default": {"BACKEND": backend, "LOCATION": location}}):
        cache = caches["default"]
        cache.clear()
        if forced:
            cache.__dict__[READER] = reads.PLAIN  # the backend's own reads: the replica
        article = Article.objects.create(title="v0")
        template.render({"article": article})
        stale = 0
        for number in range(1, count + 1):
            article.title = f"v{number}"
            article.save()  # swept on the primary
            if template.render({"article": article}) != article.title:
                stale += 1
        article.delete()
    return stale


def hit_times(backend: str, both: list[str], alone: str, count: int) -> tuple[float, float]:
    """Median time of a fragment hit with the replica listed, and with the primary alone."""
    from django.core.cache import caches
    from django.template import engines
    from django.test import override_settings

    from tests.testapp.models import Article

    template = engines["django"].from_string(FRAGMENT)
    article = Article.objects.create(title="hit")
    medians: dict[str, list[float]] = {"both": [], "alone": []}
    try:
        for _ in range(5):  # interleaved rounds
            for side, location in (("both", both), ("alone", alone)):
                entry: dict[str, Any] = {"BACKEND": backend, "LOCATION": location}
                with override_settings(CACHES={"default": entry}):
                    caches["default"].clear()
                    template.render({"article": article})  # stored
                    times = []
                    for _ in range(count // 5):
                        started = time.perf_counter()
                        template.render({"article": article})
                        times.append(time.perf_counter() - started)
                    medians[side].append(statistics.median(times))
    finally:
        article.delete()
    return statistics.median(medians["both"]), statistics.median(medians["alone"])


def _wait_in_sync(primary: int, replica: int, timeout: float = 10.0) -> None:
    import redis

    from tests.servers import LOOPBACK

    client = redis.Redis(host=LOOPBACK, port=replica)
    deadline = time.monotonic() + timeout
    while client.info("replication").get("master_link_status") != "up":
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not connect to the primary")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
