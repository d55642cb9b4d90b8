"""Markdown tables from benchmark result files (for the README's results section).

    python benchmarks/make_table.py                                  # every JSON under benchmarks/results/
    python benchmarks/make_table.py benchmarks/results/cpu-amd-epyc  # one device
    python benchmarks/make_table.py a.json b.json -o table.md

Reads both formats in benchmarks/results/<device>/:
  - pytest-benchmark JSON (``pytest benchmarks/... --benchmark-json FILE``): head stages
    (bench_upsample_crop_add.py) and end-to-end FCN-8s (bench_fcn.py), one row per benchmark
    group with the providers side by side;
  - ``bench.json`` written by ``fcnfast bench --out DIR``: head-only and end-to-end per provider;
  - the GPU validation's files (``benchmarks/gpu/validate.sh``): ``summary.json`` as a table of
    steps, ``stages.json`` as the per-stage table; its other files are summarised by summary.json.
Speedups are against the ``reference`` (or ``eager``) provider of the same group.
``--readme README.md`` replaces the text between the README's results markers.
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


def validation_summary_table(data: dict, source: str) -> List[str]:
    lines = [f"### GPU validation — `{os.path.relpath(source)}` (`benchmarks/gpu/validate.sh`, {data['mode']})", ""]
    def text(value) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items())
        return str(value)

    rows = []
    for step in data["steps"]:
        if step["step"] in ("stages", "bench"):  # their own tables follow
            headline = "see its table"
        else:
            headline = "; ".join(f"{k}: {text(v)}" for k, v in (step.get("headline") or {}).items()
                                 if k != "first_failures")
        rows.append([step["step"], step["status"][:60], f"{step['wall_s']:.0f} s", headline[:300] or "—"])
    lines += _table(["step", "status", "wall", "headline"], rows)
    lines.append("")
    return lines


def stages_table(data: dict, source: str) -> List[str]:
    lines = [f"### {data['device']} — `{os.path.relpath(source)}` (head stages, `benchmarks/gpu/stages.py`)", "",
             f"FCN-8s at {data['input_size'][0]}x{data['input_size'][1]}, {data['num_classes']} classes; torch "
             f"{data['torch']}; {data['timing']}; device-to-device copy {data['copy_gbps']:.0f} GB/s. Each cell: median "
             f"per call from Python (GB/s of the bytes the fused kernel must move; speedup vs eager)"
             + ("; `graph` = replayed from a CUDA graph, the GPU's own time." if any(
                 "graph_median_ms" in r for r in data["results"]) else "."), ""]
    groups: "OrderedDict[tuple, Dict[str, dict]]" = OrderedDict()
    for r in data["results"]:
        key = (r["stage"], r["batch"], r["dtype"], r["weights"])
        groups.setdefault(key, {})[r.get("provider", "?")] = r
    providers = ["eager", "compile", "triton", "cuda"]
    rows = []
    for (stage, batch, dtype, weights), by in groups.items():
        cells = []
        for p in providers:
            r = by.get(p)
            if r is None or r.get("status") != "ok":
                cells.append(r.get("status", "—") if r else "—")
                continue
            cell = f"{_ms(r['median_ms'])} ({r['gbps']:.0f} GB/s"
            cell += f", **{r['speedup_vs_eager']:.2f}x**)" if "speedup_vs_eager" in r else ")"
            if "graph_median_ms" in r:
                cell += f"; graph {_ms(r['graph_median_ms'])}"
                cell += f" ({r['graph_speedup_vs_eager']:.2f}x)" if "graph_speedup_vs_eager" in r else ""
            cells.append(cell)
        rows.append([stage, str(batch), dtype, weights] + cells)
    lines += _table(["stage", "batch", "dtype", "weights"] + providers, rows)
    lines.append("")
    return lines


def tables_for(path: str) -> List[str]:
    with open(path) as f:
        data = json.load(f)
    if data.get("benchmark") == "fcnfast bench":
        return fcnfast_bench_tables(data, path)
    if "benchmarks" in data:
        return pytest_benchmark_tables(data, path)
    if data.get("step") == "stages":
        return stages_table(data, path)
    if "steps" in data and "mode" in data:
        return validation_summary_table(data, path)
    return []  # the validation's env/tests/sanitizer/kernels files: summary.json carries their headlines


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
    parser.add_argument("--readme", help="replace the text between <!-- results:begin --> and <!-- results:end --> here")
    args = parser.parse_args(argv)
    files = find_files(args.paths)
    if not files:
        print("make_table.py: no result JSON files found", file=sys.stderr)
        return 1
    lines: List[str] = []
    for path in files:
        lines += tables_for(path)
    text = "\n".join(lines).rstrip() + "\n"
    if args.readme:
        with open(args.readme) as f:
            readme = f.read()
        begin, end = "<!-- results:begin -->", "<!-- results:end -->"
        if begin not in readme or end not in readme:
            raise SystemExit(f"make_table.py: {args.readme} lacks the {begin} / {end} markers")
        head, rest = readme.split(begin, 1)
        tail = rest.split(end, 1)[1]
        with open(args.readme, "w") as f:
            f.write(head + begin + "\n" + text + end + tail)
        return 0
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
