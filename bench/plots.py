"""PNG plots of the benchmark results (matplotlib, `pip install -e '.[bench]'`).

- `latency_vs_tasks.png`: time per transition against the number of tasks, control system next to
  its same-run baseline (bare grpclib fan-out for OCC tasks, bare asyncio fan-out in memory).
- `time_per_layer.png`: for each N, a transition cycle's time beside what the tasks' fan-out costs
  at the least (the baseline), side by side and labelled with their values (a stacked "extra" bar
  would hide a core faster than its baseline as a zero-height bar).
- `start_of_run.png`: the start-of-run overhead of each round, core and bare fan-out, against the
  goal (a horizontal line).

A curve is drawn only with at least `MIN_POINTS` points: fewer cannot show a trend.
- `soak.png`: the soak scenario's samples after every cycle: resident set (core and each executor
  process) and the core's Python heap, then
  descriptors, threads and child processes, then the longest event-loop stall of each cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LATENCY_PNG = "latency_vs_tasks.png"
LAYERS_PNG = "time_per_layer.png"
SOAK_PNG = "soak.png"
START_PNG = "start_of_run.png"
MIN_POINTS = 4


def draw(results: dict[str, Any], directory: Path) -> list[Path]:
    """Draw what the results allow; returns the files written (none if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    written = []
    overhead = results.get("occ_overhead", {}).get("per_n", {})
    scale = results.get("scale", {})
    if len(overhead) >= MIN_POINTS:
        fig, ax = plt.subplots(figsize=(8, 5))
        sizes = sorted(overhead, key=int)
        steps = list(overhead[sizes[0]]["core_s"]) if sizes else []
        for step in steps:
            xs = [int(n) for n in sizes]
            line = ax.plot(
                xs, [overhead[n]["core_s"][step] * 1000 for n in sizes], "o-", label=f"{step} (core)"
            )
            ax.plot(
                xs,
                [overhead[n]["bare_s"][step] * 1000 for n in sizes],
                "x--",
                color=line[0].get_color(),
                alpha=0.6,
                label=f"{step} (bare gRPC)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tasks in the environment")
        ax.set_ylabel("time per transition (ms)")
        ax.set_title("Transition latency vs number of tasks (same-run baselines dashed)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
        path = directory / LATENCY_PNG
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if overhead:
        fig, ax = plt.subplots(figsize=(8, 5))
        sizes = sorted(overhead, key=int)
        labels = [f"N={n}\nOCC farm" for n in sizes]
        bare = [sum(overhead[n]["bare_s"].values()) for n in sizes]
        core = [sum(overhead[n]["core_s"].values()) for n in sizes]
        if scale:
            labels.append(f"N={scale['tasks']}\nin-process")
            bare.append(scale["bare_cycle_s"])
            core.append(scale["cycle_s"] - scale["transition_s"]["DEPLOY"])
        xs = list(range(len(labels)))
        width = 0.4
        for offset, values, label in (
            (-width / 2, bare, "tasks' fan-out alone (bare baseline: gRPC or asyncio)"),
            (width / 2, core, "control system (actors, environment, roles, fan-out)"),
        ):
            bars = ax.bar([x + offset for x in xs], values, width, label=label)
            ax.bar_label(bars, labels=[f"{value:.2f}" for value in values], fontsize=7)
        ax.set_xticks(xs, labels)
        ax.set_ylabel("seconds per cycle")
        ax.set_title(
            "Where a cycle's time goes (CONFIGURE+START+STOP+RESET; in-process also EXIT)", fontsize=10
        )
        ax.legend(fontsize=8)
        path = directory / LAYERS_PNG
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    start = results.get("start_of_run")
    if isinstance(start, dict) and len(start.get("overhead_per_round_s") or []) >= MIN_POINTS:
        written.append(draw_start_of_run(plt, start, directory / START_PNG))
    soak = results.get("soak")
    if isinstance(soak, dict) and soak.get("series"):
        written.append(draw_soak(plt, soak, directory / SOAK_PNG))
    return written


def draw_start_of_run(plt: Any, start: dict[str, Any], path: Path) -> Path:
    """The overhead of each round's START (beyond the slowest task), core and bare, and the goal."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, style, label in (
        ("overhead_per_round_s", "o-", "core"),
        ("bare_overhead_per_round_s", "x--", "bare fan-out (one grpclib client, same run)"),
    ):
        values = start.get(key) or []
        ax.plot(range(1, len(values) + 1), values, style, label=label)
    ax.axhline(start["goal_s"], color="tab:red", linestyle=":", label=f"goal: {start['goal_s']:g} s")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("round")
    ax.set_ylabel("START_ACTIVITY beyond the slowest task (s)")
    met = "met" if start.get("goal_met") else "not met"
    ax.set_title(
        f"Start of run, N={start['tasks']}: median {start['overhead_s']:.2f} s against "
        f"the goal of {start['goal_s']:g} s ({met})",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_soak(plt: Any, soak: dict[str, Any], path: Path) -> Path:
    """Three panels against the cycle number (0: the core before the first cycle)."""
    series = soak["series"]
    cycles = list(range(len(series["rss"])))
    fig, (memory, counts, stalls) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    memory.plot(cycles, [value / 2**20 for value in series["rss"]], "-", label="core RSS (MB)")
    for node, executor in (soak.get("executors") or {}).items():
        memory.plot(
            cycles, [kb / 1024 for kb in executor["rss_kb"]], "-", alpha=0.7, label=f"executor {node} RSS"
        )
    memory.axvline(soak["warmup_cycles"], color="grey", linestyle=":", label="end of warm-up")
    memory.set_ylabel("RSS (MB)")
    heap = memory.twinx()
    heap.plot(cycles, [value / 1000 for value in series["heap_blocks"]], "--", color="tab:purple")
    heap.set_ylabel("core's Python heap blocks (thousands)", color="tab:purple")
    growth = soak["growth_per_cycle"]
    memory.set_title(
        f"Soak: {soak['cycles']} {soak['workflow']} cycles; after warm-up RSS {growth['rss']:+,.0f} B/cycle, "
        f"heap {growth['heap_blocks']:+.1f} blocks/cycle",
        fontsize=9,
    )
    memory.legend(fontsize=8, loc="lower right")
    # Equal counts would hide each other's lines: each has its own style.
    for key, style in (("fds", "-"), ("threads", "--"), ("children", ":")):
        counts.plot(cycles, series[key], style, linewidth=2, label=f"core {key}")
    counts.set_ylabel("count after the cycle")
    counts.legend(fontsize=8)
    stalls.plot(cycles[1:], soak["loop_stall_ms_per_cycle"], ".", label="longest stall in the cycle")
    stalls.set_ylabel("event-loop stall (ms)")
    stalls.set_xlabel("cycle (create, CONFIGURE, START, STOP, destroy)")
    for axis in (memory, counts, stalls):
        axis.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
