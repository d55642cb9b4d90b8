"""What a benchmark run measures: :class:`BenchConfig`, the dtypes it accepts, the per-device
defaults, and how sizes are written (``HxW``: height, then width, in input and output alike).

The device is resolved here and nowhere else in the package (:meth:`BenchConfig.resolved`).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import List, Optional, Sequence, Tuple

import torch

from ..devices import resolve_device
from ..models import DEFAULT_MODEL, model_layout
from .providers import ALL_PROVIDERS

# The dtypes a run can measure, in the order `fcnfast bench --help` and its errors list them.
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
DEFAULT_DTYPE = "float32"
KINDS = ("head", "end_to_end")  # what is timed: the head stages alone, and the whole forward
KIND_TITLES = {"head": "head only", "end_to_end": "end to end"}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Least time worth giving the compile child (compiling FCN-8s takes 40-70 s on the 2-core CPU).
MIN_COMPILE_S = {"cpu": 60.0, "cuda": 120.0}

# Defaults per device type. On the 2-core CPU one FCN-8s forward at 500x500 takes ~3.5 s idle and
# 15-20 s when other jobs compete for the cores, so end-to-end uses few runs there (and a soft
# time limit); the head is cheap.
DEVICE_DEFAULTS = {
    "cpu": dict(runs=3, warmup=1, head_runs=20, head_warmup=3, compile_timeout=120.0, time_limit=150.0),
    "cuda": dict(runs=50, warmup=10, head_runs=200, head_warmup=20, compile_timeout=900.0, time_limit=None),
}


def size_label(size: Sequence[int]) -> str:
    """``(height, width)`` as every report writes it: ``"375x500"``."""
    return f"{size[0]}x{size[1]}"


def parse_size(text: str) -> Tuple[int, int]:
    """``"N"`` -> (N, N); ``"HxW"`` -> (H, W). Raises ValueError naming the accepted forms."""
    parts = text.lower().split("x")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise ValueError(f"--size takes N or HxW (height x width, e.g. 500 or 375x500), got {text!r}")


@dataclasses.dataclass
class BenchConfig:
    sizes: List[Tuple[int, int]] = dataclasses.field(default_factory=lambda: [(500, 500)])  # (H, W)
    batches: List[int] = dataclasses.field(default_factory=lambda: [1])
    dtypes: List[str] = dataclasses.field(default_factory=lambda: [DEFAULT_DTYPE])
    model: str = DEFAULT_MODEL
    num_classes: Optional[int] = None  # None: the model's (the release's count)
    weights: Optional[str] = None
    providers: Optional[List[str]] = None  # None: every provider that runs on the device
    device: str = "auto"
    runs: Optional[int] = None  # end-to-end timed runs (None: device default)
    warmup: Optional[int] = None
    head_runs: Optional[int] = None
    head_warmup: Optional[int] = None
    compile_timeout: Optional[float] = None  # seconds for the whole compile child; 0 = no limit
    compile_mode: Optional[str] = None  # torch.compile mode (None: max-autotune on GPU, default on CPU)
    time_limit: Optional[float] = None  # soft limit of the whole run in seconds; 0 = none
    seed: int = 0
    threads: Optional[int] = None  # torch.set_num_threads for the run (None: torch's default)
    rounds: Optional[int] = None  # interleaved rounds (every provider once per round, in one process); None: off
    memory: bool = False  # also measure each call's peak tensor memory (one more call per provider and kind)
    gemm_peak: bool = True  # measure the float32 GEMM peak, for each provider's fraction of the FLOP floor

    def resolved(self) -> "BenchConfig":
        """A copy with device and the per-device defaults filled in (and checked).

        Raises ValueError for a bad value, a CUDA device torch cannot see included.
        """
        cfg = copy.deepcopy(self)
        layout = model_layout(cfg.model)
        # The workload is one random image batch in, one score map out.
        if layout.input_channels != (3,) or len(layout.tasks) != 1:
            raise ValueError(
                f"fcnfast bench times networks with one 3-channel input and one output; {layout.name} takes "
                f"{' and '.join(f'{c}-channel' for c in layout.input_channels)} input(s) and gives "
                f"{len(layout.tasks)} output(s)")
        if cfg.num_classes is None:
            cfg.num_classes = layout.default_num_classes
        cfg.device = str(resolve_device(cfg.device))
        for key, value in DEVICE_DEFAULTS[torch.device(cfg.device).type].items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        for key in ("runs", "head_runs"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(cfg, key)}")
        for key in ("warmup", "head_warmup"):
            if getattr(cfg, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(cfg, key)}")
        if not cfg.sizes or any(h < 1 or w < 1 for h, w in cfg.sizes):
            raise ValueError(f"sizes must be positive, got {cfg.sizes}")
        if not cfg.batches or any(b < 1 for b in cfg.batches):
            raise ValueError(f"batches must be >= 1, got {cfg.batches}")
        for name in cfg.dtypes:
            if name not in DTYPES:
                raise ValueError(f"unknown dtype {name!r}; choose from {list(DTYPES)}")
        if cfg.rounds is not None and cfg.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {cfg.rounds}")
        if cfg.threads is not None and cfg.threads < 1:
            raise ValueError(f"threads must be >= 1, got {cfg.threads}")
        if cfg.compile_mode is None:
            cfg.compile_mode = "max-autotune" if cfg.device.startswith("cuda") else "default"
        if cfg.compile_mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {cfg.compile_mode!r}; choose from {list(COMPILE_MODES)}")
        if cfg.providers is not None:
            unknown = [p for p in cfg.providers if p not in ALL_PROVIDERS]
            if unknown:
                raise ValueError(f"unknown provider(s) {unknown}; choose from {list(ALL_PROVIDERS)}")
        return cfg
