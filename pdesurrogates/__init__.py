"""pdesurrogates: learned surrogates of PDE solvers and learned linear-solver accelerators.

Layers (lower never import higher):
``physics``/``linalg`` -> ``data`` -> ``nn``/``models``/``losses`` -> ``solvers.learned``
-> ``train`` -> ``bench``/``cli``.
"""

__version__ = "0.1.0"
