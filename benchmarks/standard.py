"""The FNO paper's standard benchmarks on our data: Darcy, Burgers, Navier–Stokes.

The logic lives in :mod:`pdesurrogates.bench.standard`; this is its command line::

    OMP_NUM_THREADS=1 python benchmarks/standard.py darcy --models fno      # train/resume one row
    python benchmarks/standard.py darcy --report                          # result files from what exists
    python benchmarks/standard.py burgers --time-limit 3600               # every row, resumably cut

Runs live in ``runs/standard/<benchmark>/<model>/`` (resumed after any interruption; finished rows
are skipped); results go to ``benchmarks/results/cpu/standard_<benchmark>.{json,md,png}``.
"""

from __future__ import annotations

import sys

from pdesurrogates.bench.standard import main

if __name__ == "__main__":
    sys.exit(main())
