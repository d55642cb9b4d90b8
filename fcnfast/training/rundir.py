"""The run directory's files and the run log.

``checkpoint.pth`` (latest) and ``best.pth`` (best mean IU), ``config.json``, and ``log.csv`` +
``log.jsonl`` (iteration, loss, lr, images/s, elapsed seconds and, on validation rows, the
paper's four metrics; the JSON lines add per-class IU). Only rank 0 writes them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..checkpoints import atomic_write_text, remove_stale_temp_files
from ..errors import reporting_full_disk
from ..evaluation import METRIC_NAMES, json_safe

__all__ = ["BEST_NAME", "CHECKPOINT_NAME", "CONFIG_NAME", "LOG_FIELDS", "RunLog", "clean_run_dir", "read_log"]

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"
CONFIG_NAME = "config.json"
_CSV_NAME, _JSONL_NAME = "log.csv", "log.jsonl"
LOG_FIELDS = ("iteration", "loss", "lr", "images_per_s", "elapsed_s", *METRIC_NAMES)
# Floats written with repr() so the CSV round-trips them exactly.
_EXACT_FIELDS = ("loss", "lr", *METRIC_NAMES)


def clean_run_dir(out: Path) -> None:
    """Create ``out`` and delete temp files an interrupted write left there."""
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out, (CHECKPOINT_NAME, BEST_NAME, CONFIG_NAME, _CSV_NAME, _JSONL_NAME))


class RunLog:
    """``log.csv`` + ``log.jsonl`` in the run directory (rank 0 only). On resume, rows past the
    resumed iteration (logged by the interrupted run after its last checkpoint) are dropped."""

    def __init__(self, out: Path, *, resume_from: Optional[int]) -> None:
        self.csv_path, self.jsonl_path = out / _CSV_NAME, out / _JSONL_NAME
        if resume_from is None:
            self.csv_path.write_text(",".join(LOG_FIELDS) + "\n")
            self.jsonl_path.write_text("")
        else:
            self._truncate(resume_from)
        self._csv = open(self.csv_path, "a", newline="")
        self._jsonl = open(self.jsonl_path, "a")
        self._writer = csv.DictWriter(self._csv, fieldnames=LOG_FIELDS, extrasaction="ignore", lineterminator="\n")

    def _truncate(self, iteration: int) -> None:
        rows: List[Dict[str, str]] = []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("iteration", "").isdigit() and int(r["iteration"]) <= iteration]
        buffer = io.StringIO()
        w = csv.DictWriter(buffer, fieldnames=LOG_FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.csv_path, buffer.getvalue())
        kept: List[str] = []
        if self.jsonl_path.is_file():
            for line in self.jsonl_path.read_text().splitlines():
                try:
                    if int(json.loads(line).get("iteration", -1)) <= iteration:
                        kept.append(line)
                except (ValueError, AttributeError):
                    continue  # a line torn by the kill
        atomic_write_text(self.jsonl_path, "".join(l + "\n" for l in kept))

    def write(self, record: Dict[str, Any]) -> None:
        """Append ``record`` (LOG_FIELDS, plus ``iu`` for the JSON line) and flush both files."""
        row = {k: ("" if record.get(k) is None else record[k]) for k in LOG_FIELDS}
        for k in _EXACT_FIELDS:
            if isinstance(row[k], float):
                row[k] = repr(row[k])
        with reporting_full_disk(self.csv_path):
            self._writer.writerow(row)
            self._csv.flush()
            self._jsonl.write(json.dumps(json_safe(record)) + "\n")
            self._jsonl.flush()

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


def read_log(out: os.PathLike) -> List[Dict[str, Any]]:
    """The rows of ``out/log.csv`` with numbers parsed (empty cells -> None)."""
    rows = []
    with open(Path(out) / _CSV_NAME, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: (None if v in ("", None) else (int(v) if k == "iteration" else float(v))) for k, v in r.items()})
    return rows
