"""``python -m fcnfast.benchmark --compile-worker SPEC.json``: the compile provider's child process
(internal; started by compile_worker.bench_compile, use ``fcnfast bench``)."""

import sys

from .compile_worker import main

sys.exit(main(sys.argv[1:]))
