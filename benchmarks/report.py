"""The Markdown report of a run (``benchmarks/results/*.md``)."""

from __future__ import annotations

from typing import Any

from benchmarks.load import APPS


def _calls(calls: list[str] | None) -> str:
    if calls is None:
        return "—"
    if not calls:
        return "0"
    if len(calls) > 3 and len(set(calls)) == 1:
        return f"{len(calls)} x `{calls[0]}`"
    return f"{len(calls)}: " + ", ".join(f"`{call}`" for call in calls)


def _met(met: bool | None) -> str:
    return "—" if met is None else ("✅ met" if met else "❌ missed")


def _ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "# cachesweeper vs Django's own caching",
        "",
        f"Run {meta['date']} on commit `{meta['commit']}`"
        + (" (with uncommitted library changes)" if meta["library_modified_since_commit"] else "")
        + f": Python {meta['python']}, Django {meta['django']}, {meta['cores']} cores "
        f"({meta['cpu']}), {meta['elapsed_seconds']:.0f} s in all, load average "
        f"{meta['load_average_1min']['before']:.2f} before and "
        f"{meta['load_average_1min']['after']:.2f} after. "
        f"Command: `{meta['command'].strip()}`.",
        "",
        (
            f"The benchmark process and the cache servers share CPU {meta['pinned_to_cpu']} "
            "(loopback round trips are then steady; see the README). "
            if meta.get("pinned_to_cpu") is not None
            else "Processes not pinned to a CPU. "
        )
        + f"Times are medians of {meta['repeat']} interleaved loops of ~{meta['loop_seconds']} s "
        "each (sweeps: median of single timed sweeps); **ratio** = cachesweeper ÷ Django "
        "built-in for times (lower is better), or the throughput ratio for page hits "
        "(higher is better). **Round trips** are the outermost cache calls counted by the "
        "counting backends of `tests/counting.py` (deterministic). See "
        "`benchmarks/README.md` for what each scenario does.",
        "",
        *summary(report),
        "",
        "## All measurements",
        "",
        "| scenario | backend | case | cachesweeper | Django built-in | time | ratio "
        "| round trips: cachesweeper | round trips: Django | target | result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [row for kind in report["kinds"] for row in kind["rows"]]
    rows.sort(key=lambda row: row["scenario"].split(".")[0])
    for row in rows:
        what = row["what"] + (f" ({row['note']})" if row["note"] else "")
        lines.append(
            f"| {row['scenario']} | {row['backend']} | {what} | {row['ours']} "
            f"| {row['baseline_name']} | {row['theirs']} | {_ratio(row['ratio'])} "
            f"| {_calls(row['ours_calls'])} | {_calls(row['theirs_calls'])} "
            f"| {row['target']} | {_met(row['met'])} |"
        )
    lines += ["", *_load(report.get("load") or {}), ""]
    return "\n".join(lines)


def summary(report: dict[str, Any]) -> list[str]:
    """One line per target, one column per backend: the figure and whether it was met."""
    backends = [kind["label"] for kind in report["kinds"]]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for kind in report["kinds"]:
        for row in kind["rows"]:
            if row["met"] is None:
                continue
            if row["scenario"].startswith("4."):
                figure = f"{len(row['ours_calls'] or [])} round trip, {row['note']}"
                line = (row["scenario"], row["target"])
                if line in cells and kind["label"] in cells[line]:
                    continue
            elif row["scenario"].startswith("5."):
                figure = row["ours"]
                line = (f"{row['scenario']}, {row['what']}", row["target"])
            else:
                figure = f"{_ratio(row['ratio'])}, {_calls(row['ours_calls'])}"
                versus = f"{row['scenario']}: {row['what']} vs {row['baseline_name']}"
                line = (versus, row["target"])
            mark = "✅" if row["met"] else "❌"
            cells.setdefault(line, {})[kind["label"]] = f"{mark} {figure}"
    lines = [
        "## Targets",
        "",
        "| scenario | target | " + " | ".join(backends) + " |",
        "| --- | --- | " + " | ".join("---" for _ in backends) + " |",
    ]
    for (scenario, target), by_backend in sorted(cells.items(), key=lambda item: item[0][0][:2]):
        row = " | ".join(by_backend.get(backend, "—") for backend in backends)
        lines.append(f"| {scenario} | {target} | {row} |")
    return lines


def _load(load: dict[str, Any]) -> list[str]:
    if not load:
        return ["Load test (gunicorn + wrk): not run."]
    if "skipped" in load:
        return [f"Load test (gunicorn + wrk): skipped, {load['skipped']}."]
    apps = load["apps"]
    base = apps["django_cache_page"]["requests_per_second"]
    floor = apps["floor"]["requests_per_second"]
    lines = [
        f"## Page hits under load ({load['kind']})",
        "",
        f"One gunicorn sync worker, loaded by `wrk -t1 -c{load['connections']} "
        f"-d{load['seconds']:g}s` from a second process, on the same 2 cores.",
        "",
        "| application | requests/s | vs Django cache_page | vs floor | p50 | p99 | non-2xx |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label, _ in APPS:
        result = apps[name]
        rate = result["requests_per_second"] or 0.0
        lines.append(
            f"| {label} | {rate:,.0f} | {rate / base:.2f}x | {rate / floor:.2f}x "
            f"| {result['latency'].get('50', '—')} | {result['latency'].get('99', '—')} "
            f"| {result['non_2xx']} |"
        )
    return lines
