"""Copies of entries kept in a process (used by the WSGI page cache)."""

from __future__ import annotations

import random
import sys
import threading

from cachesweeper.copies import Copies
from cachesweeper.entries import Entry


def entry(token: int = 1) -> Entry:
    return Entry(b"page", {"blog.article.1": token}, {}, None)


def test_the_least_recently_used_copy_goes_first() -> None:
    copies = Copies(limit=250)
    copies.keep("a", entry(), 100)
    copies.keep("b", entry(), 100)
    assert copies.get("a") is not None  # "a" is now the more recent
    copies.keep("c", entry(), 100)
    assert copies.get("b") is None
    assert copies.get("a") is not None and copies.get("c") is not None
    assert copies.size == 200


def test_a_copy_larger_than_the_limit_or_without_tokens_is_not_kept() -> None:
    copies = Copies(limit=100)
    copies.keep("big", entry(), 101)
    copies.keep("untokened", Entry(b"page", {}, {}, None), 10)
    assert len(copies) == 0 and copies.size == 0


def test_keeping_a_key_again_replaces_its_copy() -> None:
    copies = Copies(limit=1000)
    copies.keep("a", entry(1), 100)
    copies.keep("a", entry(2), 300)
    assert copies.get("a") == entry(2)
    assert len(copies) == 1 and copies.size == 300
    copies.drop("a")
    assert copies.get("a") is None and copies.size == 0


def test_threads_sharing_copies_keep_the_accounting_exact() -> None:
    copies = Copies(limit=5_000)
    sizes = {f"page{n}": 100 + n * 10 for n in range(50)}
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            steps(random.Random(seed))
        except BaseException as error:
            errors.append(error)

    def steps(pick: random.Random) -> None:
        for _ in range(2_000):
            key = pick.choice(list(sizes))
            action = pick.random()
            if action < 0.5:
                copies.keep(key, entry(), sizes[key])
            elif action < 0.9:
                copies.get(key)
            else:
                copies.drop(key)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    kept = [key for key in sizes if copies.get(key) is not None]
    assert copies.size == sum(sizes[key] for key in kept) <= copies.limit
