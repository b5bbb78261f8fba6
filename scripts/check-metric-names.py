#!/usr/bin/env python3
"""Every metric named in the alert rules and the Grafana dashboard is one the kernel or the
operator exports (or one of the few named external metrics below).

Exported names are read from the files that register metrics (kernel/src/**/metrics.rs,
spill/src/**/metrics.rs, operator/src/metrics.rs) and from common/src/contract.rs (names the kernel registers through
shared constants because the operator scrapes them): each string literal `"kernel_…"` /
`"fdc_operator_…"` there. A
histogram (registered through `histogram(` or `HistogramOpts::new(`) also exports `_bucket`,
`_sum` and `_count`. A file that registers the prometheus crate's `ProcessCollector` exports
its `process_*` metrics. PromQL is reduced to its metric names by removing strings, label matchers,
grouping clauses, ranges, numbers, functions and keywords; what is left must be exported.

Usage: scripts/check-metric-names.py [RULES.yaml ...] [DASHBOARD.json ...]
(defaults: docs/prometheus/fdc-rules.yaml docs/grafana/fdc-dashboard.json)
"""
import glob
import json
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Metrics the queries may use although fdc does not export them, with who does.
EXTERNAL = {
    "up": "Prometheus (scrape health of every target)",
}

# What the prometheus crate's ProcessCollector (feature `process`, Linux) exports.
PROCESS_METRICS = {
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
    "process_virtual_memory_bytes", "process_resident_memory_bytes",
    "process_start_time_seconds", "process_threads",
}

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp",
    "clamp_max", "clamp_min", "count_over_time", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "idelta", "increase", "irate", "label_replace",
    "label_join", "last_over_time", "ln", "log2", "log10", "max_over_time", "min_over_time",
    "predict_linear", "quantile_over_time", "rate", "resets", "round", "scalar", "sort",
    "sort_desc", "sqrt", "stddev_over_time", "sum_over_time", "time", "timestamp", "vector",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group",
}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool"}


def exported():
    names = set()
    files = glob.glob(os.path.join(ROOT, "kernel/src/**/metrics.rs"), recursive=True)
    files += glob.glob(os.path.join(ROOT, "spill/src/**/metrics.rs"), recursive=True)
    files.append(os.path.join(ROOT, "operator/src/metrics.rs"))
    files.append(os.path.join(ROOT, "common/src/contract.rs"))
    for path in files:
        text = open(path).read()
        if "process_collector::ProcessCollector" in text:
            names.update(PROCESS_METRICS)
        for name in re.findall(r'"((?:kernel|fdc_operator)_[a-z0-9_]+)"', text):
            names.add(name)
        for name in re.findall(
            r'(?:histogram\(\s*r,\s*|HistogramOpts::new\(\s*)"([a-z0-9_]+)"', text
        ):
            # Only the suffixed series exist for a histogram, not its base name.
            names.discard(name)
            names.update({name + "_bucket", name + "_sum", name + "_count"})
    return names


def metric_names(expr):
    e = re.sub(r"\$\{?\w+\}?", "0", expr)  # Grafana variables
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if word in KEYWORDS or (word in FUNCTIONS and rest.startswith("(")):
            continue
        if re.fullmatch(r"\d+[smhdwy]|e\d*|Inf|NaN", word):
            continue
        names.add(word)
    return names


def exprs_of(path):
    if path.endswith(".json"):
        dash = json.load(open(path))
        panels = list(dash.get("panels", []))
        for p in dash.get("panels", []):
            panels.extend(p.get("panels", []))
        for p in panels:
            for t in p.get("targets", []):
                yield f'panel "{p["title"]}"', t["expr"]
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            if isinstance(q, dict):
                q = q.get("query")
            m = re.match(r"label_values\((.*),\s*\w+\)$", q or "")
            if m:
                yield f'variable "{v["name"]}"', m.group(1)
    else:
        doc = yaml.safe_load(open(path))
        for group in doc["groups"]:
            for rule in group["rules"]:
                yield f'alert {rule.get("alert") or rule.get("record")}', rule["expr"]


def main(paths):
    known = exported()
    bad = 0
    checked = 0
    for path in paths:
        for where, expr in exprs_of(path):
            checked += 1
            for name in sorted(metric_names(expr)):
                if name not in known and name not in EXTERNAL:
                    print(f"{path}: {where} uses {name}, which neither the kernel nor the "
                          "operator exports", file=sys.stderr)
                    bad += 1
    if bad:
        return 1
    print(f"{checked} expressions use only exported metrics "
          f"(and {', '.join(sorted(EXTERNAL))} from Prometheus)")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:] or [
        os.path.join(ROOT, "docs/prometheus/fdc-rules.yaml"),
        os.path.join(ROOT, "docs/grafana/fdc-dashboard.json"),
    ]
    sys.exit(main(args))
