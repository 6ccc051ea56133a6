"""Chart of a tools/bench.py run: speed-ups over pySigLib (and peak memory) as a PNG.

    python tools/bench.py --json bench.json
    python tools/bench_plot.py bench.json docs/bench.png

Left panel: grouped bars of the ratio pySigLib time / our time for every case of the run
(forward and backward, float64 and float32; for Gram cases, Gram forward and Gram
forward+backward), on the rows with the summary's n_jobs (-1: all threads), with
reference lines at 1x and at the 3x (forward) and 5x (backward) targets.  Right panel,
when the run measured memory: peak RSS growth of the Gram calls, ours and pySigLib,
no-grad forward and forward+backward.  The versions, machine and thread counts are in the
title and caption.

matplotlib is a dev-tool dependency of this script only (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

# Bars of a case group: (ratio key, dtype, label, colour, hatch).
SERIES: tuple[tuple[str, str, str, str, str], ...] = (
    ("fwd_ratio", "float64", "forward, float64", "#1f77b4", ""),
    ("fwd_ratio", "float32", "forward, float32", "#9ecae1", "//"),
    ("bwd_ratio", "float64", "backward (Gram: fwd+bwd), float64", "#d95f02", ""),
    ("bwd_ratio", "float32", "backward (Gram: fwd+bwd), float32", "#fdae6b", "//"),
)
FWD_TARGET, BWD_TARGET = 3.0, 5.0


def case_label(row: dict[str, object]) -> str:
    """Two-line tick label: the shape on the first line, the PDE sizes on the second."""
    first = f"Gram {row['batch']}x{row['batch']}" if row["kind"] == "gram" else f"B={row['batch']}"
    return f"{first}\nL={row['length']} d={row['dim']} λ={row['dyadic_order']}"


def selected_rows(data: dict[str, object]) -> list[dict[str, object]]:
    """Rows with the summary's n_jobs; smoke-test cases only if the run has nothing else."""
    meta = data["meta"]
    n_jobs = meta.get("summary_n_jobs", -1)
    rows = [r for r in data["results"] if r.get("n_jobs", n_jobs) == n_jobs]
    regular = [r for r in rows if not r.get("smoke")]
    return regular or rows


def gram_shape(r: dict[str, object]) -> tuple[object, ...]:
    return (r["batch"], r["length"], r["dim"], r["dyadic_order"])


def best_of(data: dict[str, object]) -> str:
    """'best of N', or 'best of A-B' for a run whose repeats adapted per case."""
    counts = sorted({r.get("repeats", data["meta"].get("repeats")) for r in data["results"]} - {None})
    if not counts:
        return ""
    return f"best of {counts[0]}" if len(counts) == 1 else f"best of {counts[0]}-{counts[-1]} runs"


def caption(data: dict[str, object]) -> str:
    meta = data["meta"]
    parts = [
        f"torch {meta.get('torch')}",
        f"Python {meta.get('python')}",
        f"{meta.get('cpu', '?')}, {meta.get('torch_threads')} threads",
        meta.get("machine", ""),
        best_of(data),
        meta.get("date", ""),
    ]
    loads = meta.get("load_average_start_end")
    if loads:
        parts.append(f"load avg {max(loads):.1f} on {meta.get('cpu_count')} CPUs")
    lines = [" · ".join(str(p) for p in parts if p)]
    extras = []
    for row in data.get("thread_scaling", []):
        if row["kind"] == "paired" and row["case"].startswith("B=1 "):
            extras.append(
                f"{row['case']} {row['dtype']}: ours 1 thread / all: fwd {row['ours_fwd']:.2f}x, "
                f"bwd {row['ours_bwd']:.2f}x"
            )
    for r in data.get("memory", []):
        if r["library"] == "ours" and r["length"] >= 1000:  # the --big Gram: its times in words
            outcome = f"{r['peak_bytes'] / 2**20:.0f} MiB, {r['time_s']:.1f} s" if r.get("error") is None else "failed"
            extras.append(f"ours {r['label']} {r['mode']} max_batch={r['max_batch']}: {outcome}")
    if extras:
        lines.append(" | ".join(extras[:2]))
        if len(extras) > 2:
            lines.append(" | ".join(extras[2:]))
    return "\n".join(lines)


def plot_speedups(ax: object, rows: Sequence[dict[str, object]]) -> None:
    cases: list[str] = []
    for r in rows:
        if r["case"] not in cases:
            cases.append(r["case"])
    by_key = {(r["case"], r["dtype"]): r for r in rows}
    labels = {r["case"]: case_label(r) for r in rows}
    present = [s for s in SERIES if any(dtype == s[1] for _, dtype in by_key)]
    width = 0.8 / max(len(present), 1)
    top = 0.0
    for k, (key, dtype, name, colour, hatch) in enumerate(present):
        xs, heights = [], []
        for i, case in enumerate(cases):
            row = by_key.get((case, dtype))
            if row is not None:
                xs.append(i - 0.4 + width * (k + 0.5))
                heights.append(float(row[key]))
        bars = ax.bar(xs, heights, width, label=name, color=colour, hatch=hatch, edgecolor="#333333", linewidth=0.5)
        ax.bar_label(bars, fmt="%.1f", fontsize=6.5, padding=1)
        top = max([top, *heights])
    ax.axhline(1.0, color="black", linewidth=1.0)
    ax.axhline(FWD_TARGET, color="#1f77b4", linestyle="--", linewidth=1.0, label=f"forward target {FWD_TARGET:g}x")
    ax.axhline(BWD_TARGET, color="#d95f02", linestyle="--", linewidth=1.0, label=f"backward target {BWD_TARGET:g}x")
    ax.set_xticks(range(len(cases)), [labels[c] for c in cases], fontsize=8)
    ax.set_ylabel("speed-up: pySigLib time / our time")
    ax.set_ylim(0, max(top, BWD_TARGET) * 1.35)  # headroom for the legend
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=3)


def plot_memory(ax: object, memory: Sequence[dict[str, object]]) -> None:
    """Peak MiB of the Gram calls (log scale); a failed call is marked 'failed' at its bar."""
    rows = [r for r in memory if r["max_batch"] == -1]
    grams = sorted({gram_shape(r) for r in rows if r.get("error") is None})
    series = (
        ("ours", "forward", "ours, no-grad fwd", "#2ca02c", ""),
        ("ours", "backward", "ours, fwd+bwd", "#98df8a", "//"),
        ("pysiglib", "forward", "pySigLib, no-grad fwd", "#7f7f7f", ""),
        ("pysiglib", "backward", "pySigLib, fwd+bwd", "#c7c7c7", "//"),
    )
    by_key = {(r["library"], r["mode"], gram_shape(r)): r for r in rows}
    width = 0.8 / len(series)
    for k, (library, mode, name, colour, hatch) in enumerate(series):
        xs, heights = [], []
        for i, gram in enumerate(grams):
            r = by_key.get((library, mode, gram))
            x = i - 0.4 + width * (k + 0.5)
            if r is not None and r.get("error") is None:
                xs.append(x)
                heights.append(max(r["peak_bytes"], 1) / 2**20)
            elif r is not None:
                ax.text(
                    x,
                    0.02,
                    "failed",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                    color="#b00000",
                    transform=ax.get_xaxis_transform(),
                )
        bars = ax.bar(xs, heights, width, label=name, color=colour, hatch=hatch, edgecolor="#333333", linewidth=0.5)
        ax.bar_label(bars, fmt="%.0f", fontsize=6.5, padding=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(grams)), [f"Gram {b}x{b}\nL={n} d={d} λ={lam}" for b, n, d, lam in grams], fontsize=8)
    ax.set_ylabel("peak memory growth of the call (MiB, log scale)")
    ax.set_title("peak memory, float64", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.margins(y=0.25)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, help="JSON written by tools/bench.py --json")
    parser.add_argument("png", type=Path, nargs="?", default=Path("docs/bench.png"), help="output PNG")
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: bench_plot.py needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2

    data = json.loads(args.json.read_text(encoding="utf-8"))
    rows = selected_rows(data)
    if not rows:
        print(f"error: no results in {args.json}", file=sys.stderr)
        return 1
    memory = data.get("memory", [])
    if not any(r.get("error") is None for r in memory):
        memory = []  # no panel without a single measurement
    meta = data["meta"]
    n_panels = 2 if memory else 1
    fig, axes = plt.subplots(
        1, n_panels, figsize=(13 if memory else 10, 5.2), gridspec_kw={"width_ratios": [3, 1.2][:n_panels]}
    )
    axes = list(axes) if n_panels > 1 else [axes]
    plot_speedups(axes[0], rows)
    n_jobs = meta.get("summary_n_jobs", -1)
    axes[0].set_title(f"speed-up over pySigLib, n_jobs={n_jobs} (higher is better)", fontsize=10)
    if memory:
        plot_memory(axes[1], memory)
    fig.suptitle(f"torch_sigkernel {meta.get('torch_sigkernel')} vs pySigLib {meta.get('pysiglib')}", fontsize=12)
    fig.text(0.5, 0.01, caption(data), ha="center", va="bottom", fontsize=7.5, color="#444444")
    n_caption_lines = caption(data).count("\n") + 1
    fig.tight_layout(rect=(0, 0.03 + 0.025 * n_caption_lines, 1, 1))
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=args.dpi)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
