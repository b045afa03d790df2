"""Benchmarks: sweeps over model size, data, resolution and compute; speed; fitted scaling laws.

Modules (imported on use, so ``import pdesurrogates.bench`` stays light):

- :mod:`~pdesurrogates.bench.fits`: ``fit_power_law`` (``a·X^-b + c`` by robust log-space least
  squares, bootstrap CI of ``b``), ``fit_groups``, ``exponent_table``.
- :mod:`~pdesurrogates.bench.training`: ``fit_surrogate`` (lean in-memory training with FLOP count),
  ``Budget``, ``count_flops``.
- :mod:`~pdesurrogates.bench.harness`: ``run_suite``, ``run_sweep`` (progress bar, resume),
  ``rebuild_reports``.
- :mod:`~pdesurrogates.bench.suites`: ``SUITES``, ``get_suite``; one module per suite.
- :mod:`~pdesurrogates.bench.schema`: ``validate``/``load`` of result JSON.
- :mod:`~pdesurrogates.bench.plots`, :mod:`~pdesurrogates.bench.report`, :mod:`~pdesurrogates.bench.datasets`,
  :mod:`~pdesurrogates.bench.cases`.
"""
