"""Pure numerics: grids, discrete operators, random fields, verified reference PDE solvers.

Nothing here imports a neural network or training code. Submodules:

``grid``           :class:`Grid` (node-based, Dirichlet / Neumann / periodic)
``operators``      finite-volume ``-div(a grad u)`` (SciPy CSR and matrix-free torch)
``random``         :func:`sample_generator`, :func:`gaussian_random_field`
``spectral``       periodic Fourier derivatives, Laplacian and its inverse, 2/3 dealiasing (torch)
``darcy``          FNO Darcy coefficients and solver
``poisson``        Poisson 1D-3D, Dirichlet / Neumann
``burgers``        1D Burgers, pseudo-spectral ETDRK4
``navier_stokes``  2D vorticity Navier–Stokes, pseudo-spectral CN/Heun, batched
``heat``           :class:`HeatSequence` of Crank–Nicolson SPD systems
``problems``       ``PROBLEMS`` registry and :func:`get_problem` for dataset generation
``fem``            P1 finite elements on triangle meshes (random Delaunay meshes of the unit square)
``hard_systems``   :func:`hard_system`: seeded families of hard SPD matrices of any size (SciPy CSR)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Grid": "grid",
    "diffusion_matrix": "operators",
    "laplacian_matrix": "operators",
    "apply_diffusion": "operators",
    "sample_generator": "random",
    "gaussian_random_field": "random",
    "HeatSequence": "heat",
    "HeatStep": "heat",
    "PROBLEMS": "problems",
    "get_problem": "problems",
    "resolve_device": "problems",
    "HARD_SYSTEMS": "hard_systems",
    "HardSystem": "hard_systems",
    "hard_system": "hard_systems",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
