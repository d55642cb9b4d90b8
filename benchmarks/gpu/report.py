"""validate.sh's reports: raw step outputs (pytest, compute-sanitizer logs, the step records) into
tests.json, sanitizer.json and summary.json, and the short table printed at the end.

    report.py tests     --junit J --log L --rc N --out tests.json
    report.py sanitizer --workdir W --out sanitizer.json [--smoke-log L --no-sanitizer WHY]
    report.py summary   --steps steps.jsonl --out DIR --mode gpu|dry-run --deadline S --elapsed S
    report.py table     --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from typing import Optional

STEP_FILES = {"env": "env.json", "tests": "tests.json", "sanitizer": "sanitizer.json", "stages": "stages.json",
              "bench": "bench.json", "kernels": "triton_kernels.json"}
SANITIZER_TOOLS = ("memcheck", "racecheck", "initcheck")


def _write(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _read(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ---- tests ---------------------------------------------------------------------------------------


def tests_report(junit: str, log: str, rc: int, mode: str) -> dict:
    """Counts and each failure's id and first lines, from the JUnit XML or, if pytest was
    killed before writing it, from the verbose log."""
    report: dict = {"mode": mode, "pytest_exit_code": rc, "source": "junit"}
    failures = []
    try:
        root = ET.parse(junit).getroot()
        counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        by_file: dict = {}
        skip_reasons: dict = {}
        for case in root.iter("testcase"):
            test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed" if child.tag == "failure" else "errors"
                    text = (child.get("message") or "") + "\n" + (child.text or "")
                    failures.append({"id": test_id, "kind": child.tag,
                                     "first_lines": [ln for ln in text.strip().splitlines() if ln.strip()][:8]})
                elif child.tag == "skipped":
                    outcome = "skipped"
                    reason = re.sub(r"\d+", "N", (child.get("message") or "")[:120])  # group alike reasons
                    skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
            counts[outcome] += 1
            module = case.get("classname", "").split(".")[-1] or "?"
            by_file.setdefault(module, {"passed": 0, "failed": 0, "errors": 0, "skipped": 0})[outcome] += 1
        report["counts"] = counts
        report["by_file"] = by_file  # which GPU tests ran, not only how many
        report["skip_reasons"] = dict(sorted(skip_reasons.items(), key=lambda kv: -kv[1])[:25])
    except (OSError, ET.ParseError):
        report["source"] = "log (no JUnit XML: pytest did not finish)"
        text = _text(log)
        counts = {k: len(re.findall(rf"\b{k.upper()}\b", text)) for k in ("passed", "failed", "skipped")}
        counts["errors"] = len(re.findall(r"\bERROR\b", text))
        report["counts"] = counts
        for line in text.splitlines():
            if " FAILED" in line or " ERROR" in line:
                failures.append({"id": line.strip()[:300], "kind": "failure", "first_lines": []})
    tail = [ln for ln in _text(log).strip().splitlines() if ln.strip()][-1:]
    report["summary_line"] = tail[0] if tail else ""
    report["failures"] = failures[:60]
    report["n_failures_listed"] = len(report["failures"])
    return report


# ---- sanitizer -------------------------------------------------------------------------------------


def _sanitizer_tool(text: str, rc: Optional[int]) -> dict:
    result: dict = {"exit_code": rc}
    m = re.search(r"ERROR SUMMARY: (\d+) error", text)
    race = re.search(r"RACECHECK SUMMARY: (\d+) hazard", text)
    if m:
        result["errors"] = int(m.group(1))
    if race:
        result["hazards"] = int(race.group(1))
    if not m and not race:
        result["errors"] = None
        result["note"] = "no summary line: the tool did not finish (timeout or failure to start)"
    messages = [ln.strip() for ln in text.splitlines()
                if ln.startswith("=========") and re.search(r"Invalid|error|Race|hazard|Uninitialized|Unused|leak|not supported",
                                                           ln, re.I) and "SUMMARY" not in ln]
    result["first_messages"] = messages[:12]
    result["smoke_cases_ok"] = len(re.findall(r"^ok ", text, re.M))
    result["smoke_cases_failed"] = len(re.findall(r"^FAIL ", text, re.M))
    return result


def sanitizer_report(workdir: str, mode: str, smoke_log: Optional[str], no_sanitizer: Optional[str]) -> dict:
    report: dict = {"mode": mode, "tools": {}}
    if no_sanitizer:
        text = _text(smoke_log)
        report["tools"] = {t: {"status": f"skipped: {no_sanitizer}"} for t in SANITIZER_TOOLS}
        report["smoke"] = {"cases_ok": len(re.findall(r"^ok ", text, re.M)),
                           "cases_failed": len(re.findall(r"^FAIL ", text, re.M)),
                           "skipped_lines": re.findall(r"^skip .*$", text, re.M)[:10]}
        return report
    rcs = {}
    for line in _text(os.path.join(workdir, "sanitizer_rc.txt")).splitlines():
        parts = line.split()
        if len(parts) == 2:
            rcs[parts[0]] = int(parts[1])
    for tool in SANITIZER_TOOLS:
        path = os.path.join(workdir, f"sanitizer_{tool}.log")
        if not os.path.exists(path):
            report["tools"][tool] = {"status": "skipped: not run"}
            continue
        report["tools"][tool] = _sanitizer_tool(_text(path), rcs.get(tool))
    return report


# ---- summary -----------------------------------------------------------------------------------------


def _headline(step: str, data: Optional[dict]) -> dict:
    """The figures of one step worth reading first."""
    if data is None:
        return {}
    try:
        if step == "env":
            gpu = data.get("gpu")
            return {"gpu": gpu if isinstance(gpu, str) else f"{gpu['name']} ({gpu['sms']} SMs, {gpu['memory_gb']} GB)",
                    "torch": data.get("torch"), "triton": data["imports"].get("triton", {}).get("version"),
                    "nvcc": data.get("nvcc"), "missing_imports": data.get("missing_imports"),
                    "imgviz_needed": data.get("fcnfast_import", {}).get("imgviz_imported")}
        if step == "tests":
            return {**data["counts"], "first_failures": [f["id"] for f in data["failures"][:5]]}
        if step == "sanitizer":
            return {tool: (r.get("status") or {k: r.get(k) for k in ("errors", "hazards") if k in r})
                    for tool, r in data["tools"].items()}
        if step == "stages":
            out = {"copy_gbps": round(data["copy_gbps"], 1)}
            for r in data["results"]:
                if r.get("status") == "ok" and r["batch"] == 1 and r["dtype"] == "float32" and r["provider"] in ("triton", "cuda"):
                    label = f"{r['stage']} {r['weights']} {r['provider']}"
                    text = f"{r.get('speedup_vs_eager', float('nan')):.2f}x eager, {r['gbps']:.0f} GB/s"
                    if "graph_median_ms" in r:
                        text += (f"; graph-replayed {r.get('graph_speedup_vs_eager', float('nan')):.2f}x eager, "
                                 f"{r['graph_gbps']:.0f} GB/s ({100 * r['graph_frac_of_copy_bw']:.0f}% of copy)")
                    out[label] = text
            out["failed"] = sum(r.get("status") == "fail" for r in data["results"])
            return out
        if step == "bench":
            out = {}
            for r in data["results"]:
                if r["kind"] == "end_to_end":
                    label = f"{r['dtype']} {r['provider']}"
                    out[label] = (f"{r['median_ms_per_image']:.2f} ms ({r.get('speedup', float('nan')):.2f}x)"
                                  if r.get("status") == "ok" else f"{r.get('status')}: {r.get('reason', '')[:80]}")
            return out
        if step == "kernels":
            return {name: (k["status"] if k["status"] != "ok" else
                           f"{len(k['keys'])} keys, max {k['max_registers']} regs, max {k['max_spills']} spill bytes")
                    for name, k in data.get("kernels", {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        return {"headline_error": f"{type(exc).__name__}: {exc}"}
    return {}


def summary(steps_log: str, out: str, mode: str, deadline: float, elapsed: float, commit: str = "unknown") -> dict:
    steps = []
    for line in _text(steps_log).splitlines():
        if line.strip():
            record = json.loads(line)
            record["status"] = record["status"] if not record.get("reason") else f"{record['status']}: {record['reason']}"
            record.pop("reason", None)
            if not record.get("log_tail"):
                record.pop("log_tail", None)
            file = STEP_FILES.get(record["step"])
            if file:
                record["file"] = file if os.path.exists(os.path.join(out, file)) else None
                record["headline"] = _headline(record["step"], _read(os.path.join(out, file)))
            steps.append(record)
    data = {"mode": mode, "commit": commit, "deadline_s": deadline, "elapsed_s": elapsed,
            "passed": all(s["status"].startswith(("pass", "skipped")) for s in steps), "steps": steps}
    _write(os.path.join(out, "summary.json"), data)
    return data


def table(out: str) -> str:
    data = _read(os.path.join(out, "summary.json")) or {"steps": []}
    lines = [f"fcnfast GPU validation ({data.get('mode')}): {data.get('elapsed_s')} s of {data.get('deadline_s')} s"]
    for s in data["steps"]:
        lines.append(f"  {s['step']:<10} {s['status'][:70]:<70} {s['wall_s']:6.0f} s")
        for key, value in (s.get("headline") or {}).items():
            lines.append(f"      {key}: {value}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tests")
    t.add_argument("--junit", required=True)
    t.add_argument("--log", required=True)
    t.add_argument("--rc", type=int, required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--mode", default="gpu")
    s = sub.add_parser("sanitizer")
    s.add_argument("--workdir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--mode", default="gpu")
    s.add_argument("--smoke-log")
    s.add_argument("--no-sanitizer", help="why the sanitizer tools did not run")
    m = sub.add_parser("summary")
    m.add_argument("--steps", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--mode", default="gpu")
    m.add_argument("--deadline", type=float, required=True)
    m.add_argument("--elapsed", type=float, required=True)
    m.add_argument("--commit", default="unknown")
    b = sub.add_parser("table")
    b.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "tests":
        _write(args.out, tests_report(args.junit, args.log, args.rc, args.mode))
    elif args.cmd == "sanitizer":
        report = sanitizer_report(args.workdir, args.mode, args.smoke_log, args.no_sanitizer)
        _write(args.out, report)
        bad = [t for t, r in report["tools"].items() if r.get("errors") or r.get("hazards") or
               (r.get("errors", 0) is None) or r.get("smoke_cases_failed")]
        smoke_bad = report.get("smoke", {}).get("cases_failed")
        return 1 if bad or smoke_bad else 0
    elif args.cmd == "summary":
        summary(args.steps, args.out, args.mode, args.deadline, args.elapsed, args.commit)
    else:
        print(table(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
