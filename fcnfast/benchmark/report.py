"""Results as text: the table ``fcnfast bench`` prints, ``bench.json`` + ``bench.png`` on disk,
and the markdown pieces of the README's results tables (``benchmarks/make_table.py``).

Every time is written by :func:`format_ms` and every size by :func:`~.config.size_label` (HxW).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .config import KIND_TITLES, KINDS, size_label
from .plot import plot

# Column order of providers in the markdown tables: the baselines first, then fcnfast's.
PROVIDER_ORDER = ["reference", "compile", "compile-freezing", "onnxruntime", "cpp", "cuda", "triton", "fcnfast-cpp",
                  "fcnfast-cuda", "fcnfast-triton", "fcnfast-optimize"]
MISSING = "—"


def format_ms(ms: float) -> str:
    """A time given in milliseconds, with its unit and three significant digits or so."""
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 1:
        return f"{ms:.1f} ms"
    if ms >= 0.01:
        return f"{ms:.3f} ms"
    return f"{ms * 1000:.1f} µs"


def load_note(env: dict) -> str:
    """'load average L on N cores' for a CPU run that recorded it, else ''."""
    if env.get("device") == "cpu" and env.get("load_average"):
        return f"load average {env['load_average'][0]:.1f} on {env.get('cpu_count', '?')} cores"
    return ""


# ---- the console table -----------------------------------------------------------------------


def format_table(report: dict) -> str:
    """The human-readable table ``fcnfast bench`` prints for a bench.json dict."""
    env, cfg = report["environment"], report["config"]
    on_cpu = not env["device"].startswith("cuda")
    load = load_note(env)
    lines = [
        f"fcnfast bench: {cfg['model_class']} ({cfg['num_classes']} classes, weights: {cfg['weights']})",
        f"device {env['device_name']}; torch {env['torch']}, triton {env['triton']}, python {env['python']}, "
        f"commit {env['git_commit'][:12]}" + (f"; {load}" if load else ""),
        f"end-to-end: {cfg['runs']} timed run(s) after {cfg['warmup']} warm-up; head: {cfg['head_runs']} "
        f"run(s) after {cfg['head_warmup']} warm-up" + (
            "  (few end-to-end runs: one CPU forward takes seconds; pass --runs to change)" if on_cpu else ""),
        "times per image (median, p10, p90); sizes HxW; speedup = reference median / provider median; "
        "max|diff| vs the float32 reference output",
    ]
    groups: Dict[tuple, List[dict]] = {}
    for r in report["results"]:
        groups.setdefault((tuple(r["size"]), r["batch"], r["dtype"]), []).append(r)
    for (size, batch, dtype), rows in groups.items():
        lines += ["", f"== {size_label(size)}, batch {batch}, {dtype} =="]
        for kind, detail in zip(KINDS, ("fused upsampling stages on captured inputs", "backbone + head")):
            lines.append(f"  {KIND_TITLES[kind]} ({detail})")
            lines.append(f"    {'provider':<18} {'median':>10} {'p10':>10} {'p90':>10} {'speedup':>8} {'max|diff|':>10} "
                         f"{'floor':>6} {'peak/img':>9}")
            lines += [_console_row(r) for r in rows if r["kind"] == kind]
    if env.get("gemm_peak_gflops"):
        lines.append(f"FLOP floor: the FLOPs at this run's float32 GEMM peak, {gemm_note(env)}; "
                     "'floor' = floor time / median")
    lines += [f"note: {note}" for note in report.get("notes", [])]
    lines.append(f"wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)


def _console_row(r: dict) -> str:
    if r.get("status") != "ok":
        return f"    {r['provider']:<18} {r.get('status', '?')}: {r.get('reason', '')}"
    speed = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
    diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else "-"
    extra = f"  (compile {r['compile_s']:.0f} s)" if "compile_s" in r else ""
    if r.get("note"):
        extra += f"  ({r['note']})"
    times = " ".join(f"{format_ms(r[f'{q}_ms_per_image']):>10}" for q in ("median", "p10", "p90"))
    floor = f"{100 * r['floor_fraction']:.0f}%" if "floor_fraction" in r else "-"
    return f"    {r['provider']:<18} {times} {speed:>8} {diff:>10} {floor:>6} {format_mb(r):>9}{extra}"


def format_mb(r: dict) -> str:
    """An entry's peak tensor memory per image in MB, or '-'."""
    if "peak_bytes_per_image" not in r:
        return "-"
    mb = r["peak_bytes_per_image"] / 1e6
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.2f} MB"


def gemm_note(env: dict) -> str:
    """'GEMM peak 350 GFLOP/s (4096^3 sgemm, same run)'."""
    n = env.get("gemm_size", "?")
    return f"GEMM peak {env['gemm_peak_gflops']:.0f} GFLOP/s ({n}x{n}x{n} float32, measured in the same run)"


def write_report(report: dict, out_dir: str) -> Tuple[str, Optional[str], Optional[str]]:
    """Write bench.json and bench.png under ``out_dir``; (json path, png path or None, why no png)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "bench.json"
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2, default=str)
    png_path = out / "bench.png"
    why = plot(report, str(png_path))
    return str(json_path), (None if why else str(png_path)), why


# ---- markdown ----------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    """A GitHub markdown table, one string per line."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def order_providers(names: Iterable[str]) -> List[str]:
    """``names`` without repeats in :data:`PROVIDER_ORDER` order (unknown ones last, by name)."""
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=lambda n: (PROVIDER_ORDER.index(n) if n in PROVIDER_ORDER else 99, n))


def provider_cells(group: Dict[str, dict], providers: Sequence[str], cell: Callable[[str, dict], str]) -> List[str]:
    """One cell per provider: ``cell(provider, entry)``, or a dash where the group has no entry."""
    return [cell(p, group[p]) if p in group else MISSING for p in providers]


def source_heading(title: str, source: str, what: str = "") -> str:
    """A results section's heading: the device or run, the file it comes from, what made it."""
    return f"### {title} — `{os.path.relpath(source)}`" + (f" ({what})" if what else "")


def bench_json_tables(data: dict, source: str) -> List[str]:
    """Markdown for a ``bench.json`` of ``fcnfast bench``: head-only and end-to-end rows per provider."""
    env, cfg = data["environment"], data["config"]
    load = load_note(env)
    timing = (f"{cfg['rounds']} interleaved rounds (every provider once per round) after {cfg['warmup']} warm-up, "
              f"head {cfg['head_runs']} rounds" if cfg.get("rounds") else
              f"end-to-end {cfg['runs']} run(s) after {cfg['warmup']} warm-up, head {cfg['head_runs']} run(s)")
    lines = [source_heading(env["device_name"], source, "`fcnfast bench`"), "",
             f"{cfg.get('model_class', 'FCN8s')}, weights: {cfg['weights']}; torch {env['torch']}, "
             f"triton {env['triton']}, commit {env['git_commit'][:12]}; {timing}" + (f"; {load}" if load else "")
             + (f"; {gemm_note(env)}" if env.get("gemm_peak_gflops") else ""), ""]
    header = ["part", "input", "batch", "dtype", "provider", "median / image", "p10 – p90", "speedup", "max abs diff"]
    floors = any("floor_fraction" in r for r in data["results"])
    memory = any("peak_bytes_per_image" in r for r in data["results"])
    header += (["of FLOP floor"] if floors else []) + (["peak memory / image"] if memory else [])
    rows = []
    for kind in KINDS:
        for r in data["results"]:
            if r["kind"] != kind:
                continue
            common = [KIND_TITLES[kind], size_label(r["size"]), str(r["batch"]), r["dtype"], r["provider"]]
            extra = ([MISSING] if floors else []) + ([MISSING] if memory else [])
            if r.get("status") != "ok":
                rows.append(common + [r.get("status", "?"), r.get("reason", "")[:80], MISSING, MISSING] + extra)
                continue
            if floors:
                extra[0] = f"{100 * r['floor_fraction']:.0f}%" if "floor_fraction" in r else MISSING
            if memory:
                extra[-1] = format_mb(r).replace("-", MISSING)
            rows.append(common + [
                format_ms(r["median_ms_per_image"]),
                f"{format_ms(r['p10_ms_per_image'])} – {format_ms(r['p90_ms_per_image'])}",
                f"{r['speedup']:.2f}x" if "speedup" in r else MISSING,
                f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else MISSING,
            ] + extra)
    return lines + markdown_table(header, rows) + [""]
