"""The Markdown report of a run (``benchmarks/results/*.md``)."""

from __future__ import annotations

from typing import Any

from benchmarks.load import APPS, HOLE_APPS, TARGET_SERVER


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


def _spread(row: dict[str, Any]) -> str:
    """The row's ratio, and the range over the processes it was the median of."""
    ratios = row.get("ratios")
    if not ratios or len(ratios) < 2:
        return _ratio(row["ratio"])
    return f"{_ratio(row['ratio'])} ({min(ratios):.2f}-{max(ratios):.2f})"


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
        "each (sweeps: median of single timed sweeps)"
        + _processes(meta)
        + "; **ratio** = cachesweeper ÷ Django "
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
            f"| {row['baseline_name']} | {row['theirs']} | {_spread(row)} "
            f"| {_calls(row['ours_calls'])} | {_calls(row['theirs_calls'])} "
            f"| {row['target']} | {_met(row['met'])} |"
        )
    lines += ["", *_load(report.get("load") or {}), ""]
    if report.get("holes_load"):
        lines += [*_holes_load(report["holes_load"]), ""]
    return "\n".join(lines)


def _processes(meta: dict[str, Any]) -> str:
    processes = meta.get("processes") or 1
    if processes < 2:
        return ""
    return (
        f". Scenarios 1, 2, 3, 6, 7 and 8 ran in {processes} fresh processes: each of their rows "
        "is the median process's, with the range of all processes' ratios in brackets"
    )


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
                figure = f"{_spread(row)}, {_calls(row['ours_calls'])}"
                versus = f"{row['scenario']}: {row['what']} vs {row['baseline_name']}"
                line = (versus, row["target"])
            mark = "✅" if row["met"] else "❌"
            cells.setdefault(line, {})[kind["label"]] = f"{mark} {figure}"
    load = report.get("load") or {}
    memcached = next(
        (kind["label"] for kind in report["kinds"] if kind["kind"] == "memcached"), None
    )
    if memcached is not None:
        for label, ratio, wanted in load_ratios(load, TARGET_SERVER):
            line = (
                f"6. page hit under load ({load_server(load)['name']} + wrk): "
                f"WSGI page cache vs {label}",
                f"throughput ≥ {wanted:g}x",
            )
            mark = "✅" if ratio >= wanted else "❌"
            cells[line] = {memcached: f"{mark} {ratio:.2f}x"}
        holes = hole_ratio(report.get("holes_load") or {}, TARGET_SERVER)
        if holes is not None:
            server = load_server(report["holes_load"])["name"]
            line = (
                f"8. page hit with one CSRF hole under load ({server} + wrk): "
                "time vs the same page without holes",
                "≤ 1.3x",
            )
            cells[line] = {memcached: f"{'✅' if holes <= 1.3 else '❌'} {holes:.2f}x"}
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


#: Targets of the page-hit scenario, held against the load test's target server too.
LOAD_TARGETS = (
    ("django_cache_page", "Django cache_page", 3.0),
    ("floor", "floor: bare WSGI app, one cache GET", 0.5),
)


def load_ratios(load: dict[str, Any], server: str) -> list[tuple[str, float, float]]:
    """(what it is compared with, throughput ratio, target) of the WSGI cache under ``server``."""
    apps = (load.get("servers") or {}).get(server, {}).get("apps")
    if not apps:
        return []
    ours = apps["cachesweeper_wsgi_cache"]["requests_per_second"] or 0.0
    return [
        (label, ours / (apps[name]["requests_per_second"] or float("inf")), target)
        for name, label, target in LOAD_TARGETS
    ]


def _load(load: dict[str, Any]) -> list[str]:
    if not load:
        return ["Load test: not run."]
    if "skipped" in load:
        return [f"Load test: skipped, {load['skipped']}."]
    cpus = load.get("cpus")
    placement = (
        f"the server and memcached on CPU {','.join(map(str, cpus[0]))}, wrk on CPU "
        f"{','.join(map(str, cpus[1]))}"
        if cpus
        else "not pinned"
    )
    lines = [
        f"## Page hits under load ({load['kind']})",
        "",
        f"Each application served by one worker, loaded by `wrk -t1 -c{load['connections']} "
        f"-d{load['seconds']:g}s` from a second process; {placement}. The targets are read "
        f"under {load_server(load)['name']}; see the README.",
    ]
    for result in load["servers"].values():
        lines += ["", f"### {result['label']}", ""]
        if "skipped" in result:
            lines.append(f"Skipped: {result['skipped']}.")
            continue
        apps = result["apps"]
        base = apps["django_cache_page"]["requests_per_second"] or float("inf")
        floor = apps["floor"]["requests_per_second"] or float("inf")
        lines += [
            "| application | requests/s | vs Django cache_page | vs floor | p50 | p99 | non-2xx |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, label, _ in APPS:
            app = apps[name]
            rate = app["requests_per_second"] or 0.0
            lines.append(
                f"| {label} | {rate:,.0f} | {rate / base:.2f}x | {rate / floor:.2f}x "
                f"| {app['latency'].get('50', '—')} | {app['latency'].get('99', '—')} "
                f"| {app['non_2xx']} |"
            )
    return lines


def hole_ratio(load: dict[str, Any], server: str) -> float | None:
    """Time per request with the hole ÷ without holes (the inverse throughput ratio)."""
    apps = (load.get("servers") or {}).get(server, {}).get("apps")
    if not apps:
        return None
    hole = apps["holes_hole"]["requests_per_second"] or 0.0
    return float((apps["holes_no_hole"]["requests_per_second"] or 0.0) / hole) if hole else None


def _holes_load(load: dict[str, Any]) -> list[str]:
    if "skipped" in load:
        return [f"Holes under load: skipped, {load['skipped']}."]
    lines = [
        f"## Scenario 8 under load ({load['kind']}): a page with one CSRF hole",
        "",
        f"The same set-up as the page hits under load (`wrk -t1 -c{load['connections']} "
        f"-d{load['seconds']:g}s`, no cookies: every request is a first visit, so the hole "
        "makes a new CSRF token and sets its cookie).",
    ]
    for result in load["servers"].values():
        lines += ["", f"### {result['label']}", ""]
        if "skipped" in result:
            lines.append(f"Skipped: {result['skipped']}.")
            continue
        apps = result["apps"]
        base = apps["holes_no_hole"]["requests_per_second"] or float("inf")
        lines += [
            "| application | requests/s | time vs the page without holes | p50 | p99 | non-2xx |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, label, _ in HOLE_APPS:
            app = apps[name]
            rate = app["requests_per_second"] or 0.0
            lines.append(
                f"| {label} | {rate:,.0f} | {base / rate if rate else float('nan'):.2f}x "
                f"| {app['latency'].get('50', '—')} | {app['latency'].get('99', '—')} "
                f"| {app['non_2xx']} |"
            )
    return lines


def load_server(load: dict[str, Any]) -> dict[str, Any]:
    """What the load test measured under the server the targets are read from."""
    server: dict[str, Any] = load["servers"].get(TARGET_SERVER, {"name": TARGET_SERVER})
    return server
