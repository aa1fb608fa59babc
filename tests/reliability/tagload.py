"""A load of fragment reads and tag sweeps, checked for stale reads, without a database.

The "database" is :class:`Source`: a version per named tag. A write moves a
tag's version on, sweeps the tag (``invalidate_tag``), and only then counts
the version as *committed*. A read snapshots the committed versions, renders
``{% cachesweeper tag %}`` whose body reads the tag's version *inside* the
fragment (after the token), with a large padding so entries are big, and
compares: a version older than the snapshot is a **stale read**, i.e. older
content resurrected.

Extra threads (``chaos``) run beside the readers and writers: cache noise,
flushes, server kills.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.template import engines

import cachesweeper
from cachesweeper import signals

TEMPLATE = (
    "{% load cachesweeper %}{% cachesweeper tag 600 slot %}"
    "{{ current.version }}|{{ pad }}{% endcachesweeper %}"
)


class Source:
    """Versions per tag; ``committed`` only moves after the sweep returned."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.versions = dict.fromkeys(names, 0)
        self.committed = dict.fromkeys(names, 0)
        self.lock = threading.Lock()

    def write(self, name: str) -> None:
        with self.lock:
            self.versions[name] += 1
            version = self.versions[name]
        cachesweeper.invalidate_tag(name)
        with self.lock:
            self.committed[name] = max(self.committed[name], version)

    def floor(self, name: str) -> int:
        with self.lock:
            return self.committed[name]


class Current:
    """What a fragment body reads: the tag's version at render time."""

    def __init__(self, source: Source, name: str) -> None:
        self.source = source
        self.name = name

    @property
    def version(self) -> int:
        with self.source.lock:
            return self.source.versions[self.name]


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __getitem__(self, name: str) -> int:
        return self.counts[name]


def run(
    *,
    tags: int = 10,
    slots: int = 40,
    pad_bytes: int = 30_000,
    seconds: float = 3.0,
    readers: int = 3,
    writers: int = 2,
    chaos: list[Callable[[Callable[[], bool]], None]] | None = None,
    min_reads: int = 0,
    limit: float = 60.0,
) -> Outcome:
    """Run the load; each ``chaos`` callable runs in a thread of its own until ``running()``.

    The load runs for ``seconds``, then on until ``min_reads`` reads were made (for at
    most ``limit`` seconds in all), so that a slow machine still gives the test the
    reads it counts on.
    """
    source = Source([f"load-tag-{index}" for index in range(tags)])
    template = engines["django"].from_string(TEMPLATE)
    pad = "x" * pad_bytes
    outcome = Outcome()
    lock = threading.Lock()
    local = threading.local()
    start = time.monotonic()
    deadline = start + seconds

    def count(name: str, amount: int = 1) -> None:
        with lock:
            outcome.counts[name] += amount

    def example(text: str) -> None:
        with lock:
            if len(outcome.examples) < 5:
                outcome.examples.append(text)

    def on(state: str) -> Callable[..., None]:
        def receiver(**kwargs: Any) -> None:
            if getattr(local, "reading", False):
                count(state)

        return receiver

    receivers = {state: on(state) for state in ("hits", "misses")}
    signals.fragment_hit.connect(receivers["hits"], weak=False)
    signals.fragment_miss.connect(receivers["misses"], weak=False)

    def running() -> bool:
        now = time.monotonic()
        if now < deadline:
            return True
        with lock:
            return now < start + limit and outcome.counts["reads"] < min_reads

    def write(index: int) -> None:
        rng = random.Random(index)
        while running():
            try:
                source.write(rng.choice(source.names))
                count("writes")
            except Exception as error:
                count("errors")
                example(f"write: {error!r}")
            time.sleep(rng.uniform(0.002, 0.01))

    def read(index: int) -> None:
        rng = random.Random(100 + index)
        while running():
            name = rng.choice(source.names)
            # Mostly a few hot slots (hits), sometimes a cold one (churn, evictions).
            slot = rng.randrange(3) if rng.random() < 0.7 else rng.randrange(slots)
            floor = source.floor(name)
            local.reading = True
            try:
                text = template.render(
                    {"tag": name, "slot": slot, "current": Current(source, name), "pad": pad}
                )
            except Exception as error:
                count("errors")
                example(f"read: {error!r}")
                continue
            finally:
                local.reading = False
            version_text, _, rest = text.partition("|")
            if rest != pad or not version_text.isdigit():
                count("malformed")
                example(f"malformed: {text[:80]!r}")
                continue
            count("reads")
            if int(version_text) < floor:
                count("stale_reads")
                example(f"{name} slot {slot}: saw {version_text} after {floor} was committed")

    def guarded(target: Callable[..., None], *args: Any) -> Callable[[], None]:
        def body() -> None:
            try:
                target(*args)
            finally:
                connections.close_all()

        return body

    threads = [threading.Thread(target=guarded(write, index)) for index in range(writers)]
    threads += [threading.Thread(target=guarded(read, index)) for index in range(readers)]
    threads += [threading.Thread(target=guarded(task, running)) for task in chaos or []]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        signals.fragment_hit.disconnect(receivers["hits"])
        signals.fragment_miss.disconnect(receivers["misses"])
    outcome.seconds = round(time.monotonic() - start, 2)
    return outcome
