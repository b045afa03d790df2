"""Darcy inverse problem on the CPU: the coefficient recovered from 100 noisy pressure values, by
L-BFGS through the adjoint of the solver and through a trained FNO surrogate (see
:mod:`pdesurrogates.bench.inverse_problem` for the setting).

    python benchmarks/inverse_problem.py                 # about 25 minutes on one thread
    python benchmarks/inverse_problem.py --size smoke --out /tmp/inv --overwrite   # seconds
    python benchmarks/inverse_problem.py --plot-only     # redraw the PNG from the JSON

Writes benchmarks/results/cpu/inverse_problem.{json,md,png} (existing results are replaced only
with ``--overwrite``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy

from pdesurrogates.bench.inverse_problem import main

if __name__ == "__main__":
    raise SystemExit(main())
