"""Learned preconditioners (DCDM, neural multigrid, a registry MgNO) against CG, SSOR, IC(0) and AMG.

The benchmark lives in :mod:`pdesurrogates.bench.learned_preconditioner` (also run by
``pdesurrogates bench linear-solvers``); this is its command line:

    python benchmarks/learned_preconditioner.py --overwrite                # the committed 'small' run
    python benchmarks/learned_preconditioner.py --size smoke --out /tmp/x  # seconds
    python benchmarks/learned_preconditioner.py --size large3d --overwrite # 32^3-128^3
"""

from __future__ import annotations

import sys

from pdesurrogates.bench.learned_preconditioner import main

if __name__ == "__main__":
    sys.exit(main())
