#!/usr/bin/env python3
"""Draws lookalike-bench's plots (PNG) from the results JSON it writes; needs matplotlib (the
peers' environment, Tools/bench/setup-peers.sh, has it). lookalike-bench calls it.

  plot.py ann RESULTS.json OUT.png        recall@10 vs queries/s, one panel per index type
  plot.py latency RESULTS.json OUT.png    latency percentiles, idle vs during ingest
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def ann(results, out):
    points = results["points"]
    indexes = sorted({p["index"] for p in points if p["param"] != "exact"})
    fig, axes = plt.subplots(1, len(indexes), figsize=(5 * len(indexes), 4.2), squeeze=False)
    for ax, index in zip(axes[0], indexes):
        methods = []
        for p in points:
            if p["index"] == index and p["method"] not in methods:
                methods.append(p["method"])
        for m in methods:
            ps = [p for p in points if p["index"] == index and p["method"] == m]
            ax.plot([p["recall"] for p in ps], [p["qps"] for p in ps], marker="o", label=m)
        ax.axvline(results["target"], color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 (tie-aware)")
        ax.set_ylabel("queries/s")
        ax.set_title(index)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{results['dataset']} — {results['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def latency(results, out):
    rows = results["rows"]
    labels = [r["scenario"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.25
    for i, (key, name) in enumerate([("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]):
        ax.bar([x + i * width for x in range(len(rows))], [r[key] for r in rows], width, label=name)
    ax.set_xticks([x + width for x in range(len(rows))])
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("milliseconds")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"VSIM latency at {results['rate']:.0f} queries/s offered\n{results['machine']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    kind, path, out = sys.argv[1:4]
    with open(path) as f:
        data = json.load(f)
    {"ann": ann, "latency": latency}[kind](data, out)
