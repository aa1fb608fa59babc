"""Timing: medians of repeated loops, the sides of a comparison interleaved.

Each side is calibrated to a loop that takes about ``loop_seconds``, then the loops
run in alternation (A, B, A, B, ...) ``repeat`` times, so drift of the machine (a
noisy neighbour, CPU frequency) hits every side alike. Like :mod:`timeit`, the
garbage collector is off inside a loop. The figure reported is the median over the
loops of the time per call; the spread (interquartile range over the median) says
how far to trust it.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Per-call times of one side, in seconds, one sample per loop."""

    samples: list[float] = field(default_factory=list)
    number: int = 1  # calls per loop

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0.02 = 2 %)."""
        if len(self.samples) < 4:
            return 0.0
        quartiles = statistics.quantiles(self.samples, n=4)
        return (quartiles[2] - quartiles[0]) / self.median

    def as_dict(self) -> dict[str, object]:
        return {
            "median_us": round(self.median * 1e6, 3),
            "min_us": round(min(self.samples) * 1e6, 3),
            "spread": round(self.spread, 4),
            "calls_per_loop": self.number,
            "loops": len(self.samples),
            "samples_us": [round(sample * 1e6, 3) for sample in self.samples],
        }


@dataclass(frozen=True)
class Plan:
    """How long to measure: loops per side and the duration of one loop."""

    repeat: int = 15
    loop_seconds: float = 0.1


def _loop(func: Callable[[], object], number: int) -> float:
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            func()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def calibrate(func: Callable[[], object], loop_seconds: float) -> int:
    """Calls per loop so that one loop lasts about ``loop_seconds`` (at least 1)."""
    number = 1
    while True:
        elapsed = _loop(func, number)
        if elapsed >= loop_seconds / 10 or number >= 1 << 24:
            break
        number *= 10
    return max(1, round(number * loop_seconds / max(elapsed, 1e-9)))


def compare(sides: Mapping[str, Callable[[], object]], plan: Plan) -> dict[str, Timing]:
    """Time every side, interleaved; ``{name: Timing}``."""
    for func in sides.values():
        func()  # warm: imports, connections, template compilation, first entry
    timings = {
        name: Timing(number=calibrate(func, plan.loop_seconds)) for name, func in sides.items()
    }
    for _ in range(plan.repeat):
        for name, func in sides.items():
            timing = timings[name]
            timing.samples.append(_loop(func, timing.number) / timing.number)
    return timings


def once(func: Callable[[], object]) -> float:
    """Wall time of one call, in seconds (for operations too slow to loop)."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start
