"""Assembly time of the hard SPD families (:mod:`pdesurrogates.physics.hard_systems`) at about
10^6 unknowns: wall time of ``hard_system(family, size, seed=0)`` (random field, mesh, matrix),
unknowns, nonzeros and the matrix's memory.

Run: ``OMP_NUM_THREADS=1 python benchmarks/hard_systems_assembly.py`` (about a minute on one core);
``--quick`` for a smoke run at 10^4 unknowns (not written).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np
import torch

from pdesurrogates.bench.report import write_results
from pdesurrogates.physics.fem import random_delaunay_mesh
from pdesurrogates.physics.hard_systems import hard_system

# (family, size, params): about 10^6 unknowns each
CASES = [
    ("two-phase", 1024, {"ndim": 2, "contrast": 1e6}),
    ("two-phase", 100, {"ndim": 3, "contrast": 1e6}),
    ("lognormal", 1024, {"sigma": 3.0}),
    ("layered", 100, {"contrast": 1e6}),
    ("anisotropic", 1024, {"epsilon": 1e-3}),
    ("fem-jump", 1000, {"contrast": 1e4}),
    ("elasticity", 708, {}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for family, size, params in CASES:
        if args.quick:  # about 10^4 unknowns
            size = 22 if family == "layered" or params.get("ndim") == 3 else 100
        t0 = time.perf_counter()
        system = hard_system(family, size, seed=0, **params)
        seconds = time.perf_counter() - t0
        A = system.A
        row = {"family": family, "size": size, **{k: v for k, v in params.items()},
               "unknowns": A.shape[0], "nonzeros": A.nnz,
               "matrix_MiB": (A.data.nbytes + A.indices.nbytes + A.indptr.nbytes) / 2**20,
               "assembly_s": seconds}
        if family == "fem-jump":  # of which the Delaunay triangulation (Qhull)
            t0 = time.perf_counter()
            random_delaunay_mesh(size * size, np.random.default_rng(0), boundary_per_side=size + 2)
            row["of_which_mesh_s"] = time.perf_counter() - t0
        rows.append(row)
        print(row, flush=True)
    if args.quick:
        return 0
    columns = ["family", "size", "ndim", "contrast", "sigma", "epsilon", "unknowns", "nonzeros",
               "matrix_MiB", "assembly_s", "of_which_mesh_s"]
    notes = ("Wall time of `hard_system(family, size, seed=0, **params)`: random field (FFT or cosine "
             "transform), mesh (scipy.spatial.Delaunay of 10^6 random points for fem-jump, timed "
             "alone in `of_which_mesh_s`) and vectorised sparse "
             "assembly (COO triples, duplicates summed by SciPy). One thread, one run per "
             "family.\n\nCommand: `OMP_NUM_THREADS=1 python benchmarks/hard_systems_assembly.py`.")
    write_results("hard_systems_assembly", rows, config={"cases": CASES, "threads": torch.get_num_threads()},
                  device="cpu", title="Hard SPD families: assembly at about 10^6 unknowns",
                  notes=notes, columns=columns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
