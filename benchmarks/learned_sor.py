"""Learning the SOR relaxation factor across a sequence of systems (Khodak et al., ICLR 2024).

The benchmark lives in :mod:`pdesurrogates.bench.learned_sor` (also run by
``pdesurrogates bench linear-solvers``); this is its command line:

    python benchmarks/learned_sor.py              # the published run, about 10 minutes on one core
    python benchmarks/learned_sor.py --quick      # smoke run, learned_sor_quick.*
    python benchmarks/learned_sor.py --plot-only  # redraw the PNG from the JSON

Writes benchmarks/results/cpu/learned_sor.{json,md} and learned_sor_regret.png (``--out-dir``
elsewhere, ``--overwrite`` to replace them).
"""

from __future__ import annotations

import sys

from pdesurrogates.bench.learned_sor import main

if __name__ == "__main__":
    sys.exit(main())
