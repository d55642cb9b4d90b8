"""Markdown tables from benchmark result files (for the README's results section).

    python benchmarks/make_table.py                                  # every JSON under benchmarks/results/
    python benchmarks/make_table.py benchmarks/results/cpu-amd-epyc  # one device
    python benchmarks/make_table.py a.json b.json -o table.md

Reads both formats in benchmarks/results/<device>/:
  - pytest-benchmark JSON (``pytest benchmarks/... --benchmark-json FILE``): head stages
    (bench_upsample_crop_add.py) and end-to-end FCN-8s (bench_fcn.py), one row per benchmark
    group with the providers side by side;
  - ``bench.json`` written by ``fcnfast bench --out DIR``: head-only and end-to-end per provider.
Speedups are against the ``reference`` provider of the same group.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import OrderedDict
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
PROVIDER_ORDER = ["reference", "compile", "cpp", "cuda", "triton", "fcnfast-cpp", "fcnfast-cuda", "fcnfast-triton",
                  "fcnfast-optimize"]


def _ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 1:
        return f"{v:.1f} ms"
    if v >= 0.01:
        return f"{v:.3f} ms"
    return f"{v * 1000:.1f} µs"


def _providers(names) -> List[str]:
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: (PROVIDER_ORDER.index(n) if n in PROVIDER_ORDER else 99, n))


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _device_of_pytest_benchmark(data: dict) -> str:
    info = data.get("machine_info", {})
    fcn = info.get("fcnfast", {})
    return fcn.get("device_name") or info.get("cpu", {}).get("brand_raw") or "unknown device"


def pytest_benchmark_tables(data: dict, source: str) -> List[str]:
    stages: "OrderedDict[tuple, Dict[str, dict]]" = OrderedDict()
    fcn: "OrderedDict[tuple, Dict[str, dict]]" = OrderedDict()
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info", {})
        if "provider" not in extra:
            continue
        if "stage" in extra:
            key = (extra["stage"], extra["size"], extra["batch"], extra["weights"], extra["dtype"])
            stages.setdefault(key, {})[extra["provider"]] = extra
        else:
            key = (extra["size"], extra["batch"], extra["dtype"])
            extra = dict(extra, median_ms=bench["stats"]["median"] * 1e3)
            fcn.setdefault(key, {})[extra["provider"]] = extra
    fi = data.get("machine_info", {}).get("fcnfast", {})
    lines = [f"### {_device_of_pytest_benchmark(data)} — `{os.path.relpath(source)}`", ""]
    load = f", load average {fi['load_average'][0]:.1f} on {fi.get('cpu_count', '?')} cores" if (
        fi.get("device") == "cpu" and fi.get("load_average")) else ""
    lines.append(f"torch {fi.get('torch', '?')}, triton {fi.get('triton', '?')}, commit "
                 f"{str(fi.get('git_commit', data.get('commit_info', {}).get('id', '?')))[:12]}, "
                 f"{data.get('datetime', '')[:19]}{load}")
    lines.append("")
    if stages:
        providers = _providers(p for group in stages.values() for p in group)
        header = ["stage", "input", "batch", "weights", "dtype"] + [f"{p}" for p in providers]
        rows = []
        for (stage, size, batch, weights, dtype), group in stages.items():
            ref = group.get("reference", {}).get("ms_per_call")
            cells = []
            for p in providers:
                e = group.get(p)
                if e is None:
                    cells.append("—")
                    continue
                speed = f", **{ref / e['ms_per_call']:.1f}x**" if ref and p != "reference" else ""
                cells.append(f"{_ms(e['ms_per_call'])} ({e['gbps']:.1f} GB/s{speed})")
            rows.append([stage, f"{size}x{size}", str(batch), weights, dtype] + cells)
        lines.append("Head stages, median time per call (GB/s moved; speedup vs reference):")
        lines.append("")
        lines += _table(header, rows)
        lines.append("")
    if fcn:
        providers = _providers(p for group in fcn.values() for p in group)
        header = ["input", "batch", "dtype"] + providers
        rows = []
        for (size, batch, dtype), group in fcn.items():
            ref = group.get("reference", {}).get("median_ms")
            cells = []
            for p in providers:
                e = group.get(p)
                if e is None:
                    cells.append("—")
                    continue
                speed = f" ({ref / e['median_ms']:.2f}x)" if ref and p != "reference" else ""
                cells.append(f"{_ms(e['median_ms'] / batch)}{speed}")
            rows.append([f"{size}x{size}", str(batch), dtype] + cells)
        lines.append("FCN-8s end to end, median ms per image (speedup vs reference):")
        lines.append("")
        lines += _table(header, rows)
        lines.append("")
    return lines


def fcnfast_bench_tables(data: dict, source: str) -> List[str]:
    env, cfg = data["environment"], data["config"]
    lines = [f"### {env['device_name']} — `{os.path.relpath(source)}` (`fcnfast bench`)", ""]
    lines.append(f"{cfg.get('model_class', 'FCN8s')}, weights: {cfg['weights']}; torch {env['torch']}, "
                 f"triton {env['triton']}, commit {env['git_commit'][:12]}; end-to-end {cfg['runs']} run(s) after "
                 f"{cfg['warmup']} warm-up, head {cfg['head_runs']} run(s)"
                 + (f"; load average {env['load_average'][0]:.1f} on {env.get('cpu_count', '?')} cores"
                    if env.get("device") == "cpu" and env.get("load_average") else ""))
    lines.append("")
    header = ["part", "input", "batch", "dtype", "provider", "median / image", "p10 – p90", "speedup", "max abs diff"]
    rows = []
    for kind, label in (("head", "head only"), ("end_to_end", "end to end")):
        for r in data["results"]:
            if r["kind"] != kind:
                continue
            common = [label, f"{r['size'][0]}x{r['size'][1]}", str(r["batch"]), r["dtype"], r["provider"]]
            if r.get("status") != "ok":
                rows.append(common + [r.get("status", "?"), r.get("reason", "")[:80], "—", "—"])
                continue
            rows.append(common + [
                _ms(r["median_ms_per_image"]),
                f"{_ms(r['p10_ms_per_image'])} – {_ms(r['p90_ms_per_image'])}",
                f"{r['speedup']:.2f}x" if "speedup" in r else "—",
                f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "—",
            ])
    lines += _table(header, rows)
    lines.append("")
    return lines


def tables_for(path: str) -> List[str]:
    with open(path) as f:
        data = json.load(f)
    if data.get("benchmark") == "fcnfast bench":
        return fcnfast_bench_tables(data, path)
    if "benchmarks" in data:
        return pytest_benchmark_tables(data, path)
    return [f"<!-- {path}: not a benchmark result file -->", ""]


def find_files(paths: List[str]) -> List[str]:
    if not paths:
        paths = [os.path.join(HERE, "results")]
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(glob.glob(os.path.join(p, "**", "*.json"), recursive=True))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise SystemExit(f"make_table.py: no such file or directory: {p}")
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="result JSON files or directories (default benchmarks/results/)")
    parser.add_argument("-o", "--out", help="write the markdown here instead of stdout")
    args = parser.parse_args(argv)
    files = find_files(args.paths)
    if not files:
        print("make_table.py: no result JSON files found", file=sys.stderr)
        return 1
    lines: List[str] = []
    for path in files:
        lines += tables_for(path)
    text = "\n".join(lines).rstrip() + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
