#!/usr/bin/env python3
"""Draws throughput (ops/s) and p99 latency per scenario from bench/results/latest.csv into a PNG.
Usage: chart.py latest.csv out.png"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = [r for r in csv.DictReader(open(sys.argv[1])) if not r["scenario"].startswith("payments: prepare")]
labels = [f"{r['scenario']} [{r['engine']}]" for r in rows]
ops = [float(r["ops_per_s"] or 0) for r in rows]
p99 = [float(r["p99_ms"] or 0) for r in rows]
rss = [float(r["peak_rss_mb"] or 0) for r in rows]
colors = {"sqlite": "#4c72b0", "postgres": "#dd8452", "postgres+redis": "#55a868"}
c = [colors.get(r["engine"], "#8c8c8c") for r in rows]

fig, (a, b, m) = plt.subplots(1, 3, figsize=(18, 0.36 * len(rows) + 1.8), sharey=True,
                              gridspec_kw={"width_ratios": [3, 3, 2]})
y = range(len(rows))
a.barh(y, ops, color=c)
a.set_yticks(list(y))
a.set_yticklabels(labels, fontsize=8)
a.invert_yaxis()
a.set_xscale("log")
a.set_xlabel("throughput, ops/s (log; purchases/s for the flow, payments/s, else requests/s)")
for i, v in enumerate(ops):
    a.text(v, i, f" {v:,.0f}", va="center", fontsize=7)
b.barh(y, p99, color=c)
b.set_xscale("log")
b.set_xlabel("p99 latency, ms (log)")
for i, v in enumerate(p99):
    b.text(v, i, f" {v:.1f}", va="center", fontsize=7)
m.barh(y, rss, color=c)
m.set_xlabel("peak RSS of concertd, MB")
for i, v in enumerate(rss):
    if v:
        m.text(v, i, f" {v:.0f}", va="center", fontsize=7)
handles = [plt.Rectangle((0, 0), 1, 1, color=v) for v in colors.values()]
b.legend(handles, list(colors.keys()), loc="lower right", fontsize=8)
fig.suptitle("concertd benchmarks (bench/run): throughput, p99 and peak RSS per scenario", fontsize=11)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"chart: {sys.argv[2]}")
