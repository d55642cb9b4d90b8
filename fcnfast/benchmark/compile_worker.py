"""The torch.compile providers (``compile``, ``compile-freezing``), run in a child process with a time box: compiling FCN-8s can take
minutes (or hang), and a stuck compile must not hang ``fcnfast bench`` or lose the other results.

Parent: :func:`bench_compile` writes the inputs and a JSON spec into the run's scratch folder,
starts ``python -m fcnfast.benchmark --compile-worker SPEC`` in its own process group, kills the
group when the time box ends, and reads back what the child finished (head, then end to end: each
is saved as soon as it is timed). Child: :func:`main`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .config import DTYPES, KINDS, MIN_COMPILE_S, BenchConfig, size_label
from .heads import HeadInputs
from .costs import peak_tensor_bytes
from .providers import prepare
from .timing import summarize, sync, time_fn
from .workload import build_bench_model

WORKER_FLAG = "--compile-worker"
# The checkout that holds this fcnfast, put first on the child's PYTHONPATH so that it imports
# this very copy (not another install) even when it is not installed.
_ROOT = str(Path(__file__).resolve().parents[2])


def bench_compile(cfg: BenchConfig, provider: str, size: Tuple[int, int], batch: int, dtype_name: str, x: Tensor,
                  gt_heads: HeadInputs, workdir: str, remaining: Optional[float]) -> Dict[str, dict]:
    """``{kind: entry}`` of torch.compile ``provider`` for one (size, batch, dtype) of resolved ``cfg``.

    An entry is ``status="ok"`` with the timings and ``output``, or ``"skipped"`` / ``"timed_out"`` /
    ``"failed"`` with a ``reason``. ``remaining`` is what is left of ``--time-limit`` (None: no limit).
    """
    device = cfg.device
    timeout = cfg.compile_timeout or None
    if remaining is not None:
        needed = MIN_COMPILE_S[torch.device(device).type]
        if remaining < needed:
            reason = (f"{max(remaining, 0):.0f} s left of --time-limit {cfg.time_limit:.0f} s, torch.compile "
                      f"needs about {needed:.0f} s here (raise --time-limit, or 0 for none)")
            return {k: dict(status="skipped", reason=reason) for k in KINDS}
        timeout = min(timeout, remaining) if timeout else remaining
    tag = f"{provider}_{size_label(size)}_b{batch}_{dtype_name}"
    inputs_path = os.path.join(workdir, f"inputs_{tag}.pt")
    torch.save({"x": x.cpu(), "first_x": gt_heads.first_x.cpu(),
                "skips": [None if s is None else s.cpu() for s in gt_heads.skips],
                "sizes": [None if s is None else list(s) for s in gt_heads.sizes]}, inputs_path)
    spec = dict(
        model=cfg.model, num_classes=cfg.num_classes, weights=cfg.weights, seed=cfg.seed, device=device,
        dtype=dtype_name, batch=batch, runs=cfg.runs, warmup=cfg.warmup, head_runs=cfg.head_runs,
        head_warmup=cfg.head_warmup, kinds=list(KINDS), inputs_path=inputs_path,
        outputs_path=os.path.join(workdir, f"outputs_{tag}.pt"), result_path=os.path.join(workdir, f"result_{tag}.json"),
        mode=None if cfg.compile_mode == "default" else cfg.compile_mode, threads=cfg.threads,
        provider=provider, memory=cfg.memory,
    )
    result, status = _run_child(spec, timeout, workdir)
    outputs = {}
    if os.path.exists(spec["outputs_path"]):
        outputs = torch.load(spec["outputs_path"], map_location=device, weights_only=True)
    entries = {}
    for kind in KINDS:
        if kind in result:
            entries[kind] = dict(status="ok", output=outputs.get(kind), mode=spec["mode"] or "default",
                                 freezing=provider != "compile",
                                 warmup=max(cfg.warmup, 1) if kind == "end_to_end" else cfg.head_warmup,
                                 **result[kind])
        else:
            label = "timed_out" if status.startswith("timed out") else "failed"
            entries[kind] = dict(status=label, reason=f"torch.compile {status}")
    return entries


def _run_child(spec: dict, timeout: Optional[float], workdir: str) -> Tuple[dict, str]:
    """Run the worker on ``spec``; returns (its result dict, possibly partial; status text)."""
    spec_path = os.path.join(workdir, "compile_spec.json")
    result_path = spec["result_path"]
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log_path = os.path.join(workdir, "compile_child.log")
    status = "ok"
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "fcnfast.benchmark", WORKER_FLAG, spec_path],
                                 stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = child.wait(timeout=timeout if timeout else None)
            if rc != 0:
                status = f"failed (exit code {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
            try:
                os.killpg(child.pid, signal.SIGKILL)  # the child and the compile workers it started
            except (ProcessLookupError, PermissionError):
                child.kill()
            child.wait()
    result = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if status.startswith("failed"):
        with open(log_path) as f:
            tail = f.read()[-1500:]
        status += ": " + " | ".join(line.strip() for line in tail.strip().splitlines()[-6:])
    return result, status


def _compile_and_time(fn, kind: str, runs: int, warmup: int, batch: int, device: str, outputs: dict,
                      memory: bool) -> dict:
    """Compile ``fn`` by its first call (its output is the one kept), then time it (and measure
    its peak memory when ``memory``)."""
    t0 = time.perf_counter()
    outputs[kind] = fn()
    sync(device)
    compile_s = time.perf_counter() - t0
    times = time_fn(fn, runs, warmup, device)
    extra = {}
    if memory and device.startswith("cuda"):
        extra = {"peak_bytes_per_image": peak_tensor_bytes(fn, device) / batch}
    elif memory:  # compiled CPU code allocates in C++, out of the profiler's sight
        extra = {"peak_bytes_note": "its memory is not torch tensors the profiler sees: not measured"}
    return {"compile_s": compile_s, **summarize(times, batch), **extra}


def _work(spec_path: str) -> int:
    """Child process: torch.compile the plain reference (head, then end-to-end) and time it."""
    with open(spec_path) as f:
        spec = json.load(f)
    result: dict = {}
    outputs: dict = {}

    def save():  # after each kind, so a time box that ends the child keeps what it finished
        torch.save({k: v.cpu() for k, v in outputs.items()}, spec["outputs_path"])
        tmp = spec["result_path"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, spec["result_path"])

    device, dtype = spec["device"], DTYPES[spec["dtype"]]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = build_bench_model(spec["model"], spec["num_classes"], spec["weights"], spec["seed"], device).to(dtype)
    data = torch.load(spec["inputs_path"], map_location=device, weights_only=True)
    head_inputs = HeadInputs(data["first_x"], data["skips"], [tuple(s) if s else None for s in data["sizes"]])
    with torch.inference_mode():
        calls = prepare(spec["provider"], model, model, data["x"], dtype, device, head_inputs, spec.get("mode"))
        if "head" in spec["kinds"]:
            result["head"] = _compile_and_time(calls.head, "head", spec["head_runs"], spec["head_warmup"],
                                               spec["batch"], device, outputs, spec["memory"])
            save()
        if "end_to_end" in spec["kinds"]:
            # the compiling call stands in for the first warm-up run
            result["end_to_end"] = _compile_and_time(calls.end_to_end, "end_to_end", spec["runs"],
                                                     max(spec["warmup"] - 1, 0), spec["batch"], device, outputs,
                                                     spec["memory"])
            save()
    return 0


def main(argv: Sequence[str]) -> int:
    """``--compile-worker SPEC.json``: run the child; anything else is a usage error (exit 2)."""
    args: List[str] = list(argv)
    if len(args) == 2 and args[0] == WORKER_FLAG:
        return _work(args[1])
    print(f"usage: python -m fcnfast.benchmark {WORKER_FLAG} SPEC.json (internal; use `fcnfast bench`)",
          file=sys.stderr)
    return 2
