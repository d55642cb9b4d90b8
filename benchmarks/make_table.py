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

Times, sizes and table layout come from ``fcnfast.benchmark.report``, as in ``fcnfast bench``'s own
output; this script knows the files of the suites here and of the GPU validation.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import OrderedDict
from typing import Dict, List

from fcnfast.benchmark.config import size_label
from fcnfast.benchmark.report import (bench_json_tables, format_ms, load_note, markdown_table, order_providers,
                                      provider_cells, source_heading)

HERE = os.path.dirname(os.path.abspath(__file__))
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


def _device_of_pytest_benchmark(data: dict) -> str:
    info = data.get("machine_info", {})
    fcn = info.get("fcnfast", {})
    return fcn.get("device_name") or info.get("cpu", {}).get("brand_raw") or "unknown device"


def pytest_benchmark_tables(data: dict, source: str) -> List[str]:
    """Markdown for a pytest-benchmark JSON of the suites here: head stages and/or end to end."""
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
    load = load_note(fi)
    lines = [source_heading(_device_of_pytest_benchmark(data), source), "",
             f"torch {fi.get('torch', '?')}, triton {fi.get('triton', '?')}, commit "
             f"{str(fi.get('git_commit', data.get('commit_info', {}).get('id', '?')))[:12]}, "
             f"{data.get('datetime', '')[:19]}" + (f", {load}" if load else ""), ""]
    if stages:
        providers = order_providers(p for group in stages.values() for p in group)
        rows = []
        for (stage, size, batch, weights, dtype), group in stages.items():
            ref = group.get("reference", {}).get("ms_per_call")
            floor = group.get("write-floor", {}).get("ms_per_call")

            def cell(p: str, e: dict) -> str:
                if p == "write-floor":
                    return f"{format_ms(e['ms_per_call'])} ({e['gbps']:.1f} GB/s)"
                speed = f", **{ref / e['ms_per_call']:.1f}x**" if ref and p != "reference" else ""
                # The floor timed in alternation with this provider where recorded (see the bench).
                side = e.get("floor_ratio")
                ratio = side["ratio"] if side else (e["ms_per_call"] / floor if floor else None)
                above = f", {ratio:.1f}x floor" if ratio and p != "reference" else ""
                return f"{format_ms(e['ms_per_call'])} ({e['gbps']:.1f} GB/s{speed}{above})"

            rows.append([stage, size_label((size, size)), str(batch), weights, dtype]
                        + provider_cells(group, providers, cell))
        lines += ["Head stages, median time per call (GB/s moved; speedup vs reference; time over the write "
                  "floor, allocating and filling the output, timed in alternation with the provider where "
                  "recorded):", ""]
        lines += markdown_table(["stage", "input", "batch", "weights", "dtype"] + providers, rows) + [""]
    if fcn:
        providers = order_providers(p for group in fcn.values() for p in group)
        rows = []
        for (size, batch, dtype), group in fcn.items():
            ref = group.get("reference", {}).get("median_ms")

            def cell(p: str, e: dict) -> str:
                speed = f" ({ref / e['median_ms']:.2f}x)" if ref and p != "reference" else ""
                return f"{format_ms(e['median_ms'] / batch)}{speed}"

            rows.append([size_label((size, size)), str(batch), dtype] + provider_cells(group, providers, cell))
        lines += ["FCN-8s end to end, median ms per image (speedup vs reference):", ""]
        lines += markdown_table(["input", "batch", "dtype"] + providers, rows) + [""]
    return lines


def validation_summary_table(data: dict, source: str) -> List[str]:
    """Markdown for validate.sh's summary.json: each step's status, wall time and headline."""
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
    heading = source_heading("GPU validation", source, f"`benchmarks/gpu/validate.sh`, {data['mode']}")
    return [heading, ""] + markdown_table(["step", "status", "wall", "headline"], rows) + [""]


def stages_table(data: dict, source: str) -> List[str]:
    """Markdown for validate.sh's stages.json: each head stage per provider, with GB/s and speedup."""
    graphs = any("graph_median_ms" in r for r in data["results"])
    lines = [source_heading(data["device"], source, "head stages, `benchmarks/gpu/stages.py`"), "",
             f"FCN-8s at {size_label(data['input_size'])}, {data['num_classes']} classes; torch "
             f"{data['torch']}; {data['timing']}; device-to-device copy {data['copy_gbps']:.0f} GB/s. Each cell: median "
             f"per call from Python (GB/s of the bytes the fused kernel must move; speedup vs eager)"
             + ("; `graph` = replayed from a CUDA graph, the GPU's own time." if graphs else "."), ""]
    groups: "OrderedDict[tuple, Dict[str, dict]]" = OrderedDict()
    for r in data["results"]:
        groups.setdefault((r["stage"], r["batch"], r["dtype"], r["weights"]), {})[r.get("provider", "?")] = r
    providers = ["eager", "compile", "triton", "cuda"]

    def cell(p: str, r: dict) -> str:
        if r.get("status") != "ok":
            return r.get("status", "—")
        out = f"{format_ms(r['median_ms'])} ({r['gbps']:.0f} GB/s"
        out += f", **{r['speedup_vs_eager']:.2f}x**)" if "speedup_vs_eager" in r else ")"
        if "graph_median_ms" in r:
            out += f"; graph {format_ms(r['graph_median_ms'])}"
            out += f" ({r['graph_speedup_vs_eager']:.2f}x)" if "graph_speedup_vs_eager" in r else ""
        return out

    rows = [[stage, str(batch), dtype, weights] + provider_cells(by, providers, cell)
            for (stage, batch, dtype, weights), by in groups.items()]
    return lines + markdown_table(["stage", "batch", "dtype", "weights"] + providers, rows) + [""]


def tables_for(path: str) -> List[str]:
    """The markdown for one result file, by its format; [] for files another table summarises."""
    with open(path) as f:
        data = json.load(f)
    if data.get("benchmark") == "fcnfast bench":
        return bench_json_tables(data, path)
    if "benchmarks" in data:
        return pytest_benchmark_tables(data, path)
    if data.get("step") == "stages":
        return stages_table(data, path)
    if "steps" in data and "mode" in data:
        return validation_summary_table(data, path)
    return []  # the validation's env/tests/sanitizer/kernels files: summary.json carries their headlines


def find_files(paths: List[str]) -> List[str]:
    """The JSON files named or found below the named folders (default benchmarks/results/), in order."""
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


def replace_results(readme_path: str, text: str) -> None:
    """Put ``text`` between the README's results markers; SystemExit naming them if they are missing."""
    with open(readme_path) as f:
        readme = f.read()
    if README_BEGIN not in readme or README_END not in readme:
        raise SystemExit(f"make_table.py: {readme_path} lacks the {README_BEGIN} / {README_END} markers")
    head, rest = readme.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    with open(readme_path, "w") as f:
        f.write(head + README_BEGIN + "\n" + text + README_END + tail)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="result JSON files or directories (default benchmarks/results/)")
    parser.add_argument("-o", "--out", help="write the markdown here instead of stdout")
    parser.add_argument("--readme", help=f"replace the text between {README_BEGIN} and {README_END} here")
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
        replace_results(args.readme, text)
    elif args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
