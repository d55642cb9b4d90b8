"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's notice).

While :class:`StopSignals` is active, the first SIGINT or SIGTERM only sets a flag: the run
finishes its step, saves a checkpoint (atomically, as every checkpoint) and raises
:class:`TrainingInterrupted`, and ``fcnfast train --resume`` continues exactly from there. A
second signal acts at once, as it would without fcnfast (KeyboardInterrupt for SIGINT, exit for
SIGTERM), and the last checkpoint written stays what it was. DataLoader workers ignore both
signals (:func:`ignore_stop_signals`), so a Ctrl-C sent to the whole process group does not kill
them under the main process while it saves.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional

__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingInterrupted", "ignore_stop_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after saving ``checkpoint`` at ``iteration``.

    ``exit_code`` is the shell's code for death by that signal (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, iteration: int, checkpoint: Path) -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.signal_name} after iteration {iteration}; "
                         f"saved {checkpoint}")


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the DataLoaders: the main process decides when the run stops."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`signum` (the first one) and call
    ``notice(signal name)`` instead of stopping the process. Outside the main thread, where
    Python cannot install handlers, it does nothing and signals act as usual."""

    def __init__(self, notice: Optional[Callable[[str], None]] = None) -> None:
        self.signum: Optional[int] = None
        self._notice = notice
        self._previous: Dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            # The next one acts at once: KeyboardInterrupt for SIGINT, the default exit for SIGTERM.
            for other in STOP_SIGNALS:
                signal.signal(other, signal.default_int_handler if other == signal.SIGINT else signal.SIG_DFL)
            if self._notice is not None:
                self._notice(signal.Signals(signum).name)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


def print_stop_notice(name: str) -> None:
    """What the run says when the first stop signal arrives (on stderr, even with --quiet)."""
    again = "Ctrl-C again" if name == "SIGINT" else f"{name} again"
    print(f"\nfcnfast train: {name} received: stopping after this step with a checkpoint "
          f"({again} stops at once, without one)", file=sys.stderr, flush=True)
