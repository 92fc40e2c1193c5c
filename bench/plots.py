"""PNG plots of the benchmark results (matplotlib, `pip install -e '.[bench]'`).

- `latency_vs_tasks.png`: time per transition against the number of tasks, control system next to
  its same-run baseline (bare grpclib fan-out for OCC tasks, bare asyncio fan-out in memory).
- `time_per_layer.png`: for each N, a transition cycle split into what the tasks' gRPC fan-out
  costs at the least (the baseline) and what the control system adds on top.
- `soak.png`: the soak scenario's samples after every cycle: resident set and Python heap, then
  descriptors, threads and child processes, then the longest event-loop stall of each cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LATENCY_PNG = "latency_vs_tasks.png"
LAYERS_PNG = "time_per_layer.png"
SOAK_PNG = "soak.png"


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
    if overhead or scale:
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
        if scale:
            n = scale["tasks"]
            for step, seconds in scale["transition_s"].items():
                if step in ("DEPLOY", "destroy"):
                    continue
                ax.plot([n], [seconds * 1000], "s", label=f"{step} (core, in-process fake)")
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
        extra = [max(0.0, sum(overhead[n]["core_s"].values()) - b) for n, b in zip(sizes, bare, strict=True)]
        if scale:
            labels.append(f"N={scale['tasks']}\nin-process")
            bare.append(scale["bare_cycle_s"])
            extra.append(max(0.0, scale["cycle_s"] - scale["transition_s"]["DEPLOY"] - scale["bare_cycle_s"]))
        ax.bar(labels, bare, label="tasks' fan-out (bare baseline: gRPC or asyncio)")
        ax.bar(labels, extra, bottom=bare, label="control system on top (actors, environment, roles)")
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
    soak = results.get("soak")
    if isinstance(soak, dict) and soak.get("series"):
        written.append(draw_soak(plt, soak, directory / SOAK_PNG))
    return written


def draw_soak(plt: Any, soak: dict[str, Any], path: Path) -> Path:
    """Three panels against the cycle number (0: the core before the first cycle)."""
    series = soak["series"]
    cycles = list(range(len(series["rss"])))
    fig, (memory, counts, stalls) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    memory.plot(cycles, [value / 2**20 for value in series["rss"]], "-", label="RSS (MB)")
    memory.axvline(soak["warmup_cycles"], color="grey", linestyle=":", label="end of warm-up")
    memory.set_ylabel("RSS (MB)")
    heap = memory.twinx()
    heap.plot(cycles, [value / 1000 for value in series["heap_blocks"]], "--", color="tab:orange")
    heap.set_ylabel("Python heap blocks (thousands)", color="tab:orange")
    growth = soak["growth_per_cycle"]
    memory.set_title(
        f"Soak: {soak['cycles']} {soak['workflow']} cycles; after warm-up RSS {growth['rss']:+,.0f} B/cycle, "
        f"heap {growth['heap_blocks']:+.1f} blocks/cycle",
        fontsize=9,
    )
    memory.legend(fontsize=8, loc="lower right")
    for key in ("fds", "threads", "children"):
        counts.plot(cycles, series[key], "-", label=key)
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
