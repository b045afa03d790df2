"""Scaling-law fitter: known exponents recovered from noisy synthetic power laws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdesurrogates.bench.fits import PowerLawFit, exponent_table, fit_groups, fit_power_law


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("b_true", [0.3, 1.2])
def test_recovers_exponent_without_offset(seed: int, b_true: float) -> None:
    rng = np.random.default_rng(seed)
    x = np.repeat(np.logspace(3, 6, 6), 3)  # 6 sizes x 3 seeds, like a sweep
    y = 2.5 * x ** -b_true * np.exp(0.05 * rng.standard_normal(x.size))  # 5% noise
    fit = fit_power_law(x, y, offset=False, n_bootstrap=60, seed=seed)
    assert abs(fit.b - b_true) < 0.05
    lo, hi = fit.b_ci
    assert lo <= fit.b <= hi
    assert 0.0 < hi - lo < 0.1
    assert fit.c == 0.0 and fit.n_points == 18


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_exponent_with_offset(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.repeat(np.logspace(2, 6, 8), 3)
    b_true, c_true = 0.6, 2e-3
    y = (3.0 * x ** -b_true + c_true) * np.exp(0.02 * rng.standard_normal(x.size))
    fit = fit_power_law(x, y, offset=True, n_bootstrap=40, seed=seed)
    assert abs(fit.b - b_true) < 0.05
    assert abs(fit.c - c_true) / c_true < 0.3
    assert fit.b_ci[0] <= fit.b <= fit.b_ci[1]
    # Ignoring the floor biases the exponent low: the reason for fitting c.
    assert fit_power_law(x, y, offset=False, n_bootstrap=0).b < b_true - 0.1


def test_bootstrap_interval_covers_the_truth_most_of_the_time() -> None:
    # A nominal 95% percentile-bootstrap interval from 12 points: expect ~90% coverage; demand 75%.
    covered = 0
    for seed in range(16):
        rng = np.random.default_rng(100 + seed)
        x = np.repeat(np.logspace(3, 6, 4), 3)
        y = 1.5 * x ** -0.6 * np.exp(0.1 * rng.standard_normal(x.size))
        lo, hi = fit_power_law(x, y, offset=False, n_bootstrap=60, seed=seed).b_ci
        covered += lo <= 0.6 <= hi
    assert covered >= 12


def test_robust_loss_resists_an_outlier() -> None:
    rng = np.random.default_rng(3)
    x = np.repeat(np.logspace(3, 6, 6), 3)
    y = 2.0 * x ** -0.5 * np.exp(0.03 * rng.standard_normal(x.size))
    y[2] *= 20.0  # one diverged run
    robust = fit_power_law(x, y, offset=False, n_bootstrap=0, loss="soft_l1")
    plain = fit_power_law(x, y, offset=False, n_bootstrap=0, loss="linear")
    assert abs(robust.b - 0.5) < 0.05
    assert abs(plain.b - 0.5) > abs(robust.b - 0.5)


def test_exact_data_and_roundtrip() -> None:
    x = np.array([1e2, 1e3, 1e4, 1e5])
    fit = fit_power_law(x, 4.0 * x ** -0.25, offset=False, n_bootstrap=20)
    assert fit.b == pytest.approx(0.25, abs=1e-8) and fit.a == pytest.approx(4.0, rel=1e-8)
    assert fit.rms_log_residual < 1e-8
    again = PowerLawFit.from_dict(fit.to_dict())
    assert again == fit
    np.testing.assert_allclose(again.predict(x), 4.0 * x ** -0.25, rtol=1e-8)


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        ([1, 2, 3], [1, 2], {}, "same length"),
        ([1, 2, -3], [1, 2, 3], {}, "positive"),
        ([1, 2, 3], [1, float("nan"), 3], {}, "finite"),
        ([1, 1, 2, 2], [1, 2, 3, 4], {"offset": True}, "at least 3 distinct"),
        ([1, 2, 3], [3, 2, 1], {"loss": "l3"}, "unknown loss"),
        ([1, 2, 3], [3, 2, 1], {"ci": 1.5}, "ci must be"),
    ],
)
def test_bad_input_is_refused(x, y, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y, **kwargs)


def test_fit_groups_side_by_side() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for fam, b in (("fno", 0.4), ("mgno", 0.8)):
        for p in np.logspace(3, 5, 5):
            for s in range(2):
                rows.append({"family": fam, "params": float(p), "err": float(p ** -b * np.exp(0.02 * rng.standard_normal()))})
    rows.append({"family": "fno", "params": 1e4, "err": float("nan")})  # a diverged run is dropped
    rows.append({"family": "unet", "params": 1e4, "err": 0.1})  # one point: cannot be fitted
    fits = fit_groups(rows, group="family", x="params", y="err", n_bootstrap=20)
    assert abs(fits["fno"]["no_offset"]["b"] - 0.4) < 0.05
    assert abs(fits["mgno"]["no_offset"]["b"] - 0.8) < 0.05
    assert fits["fno"]["dropped"] == 1
    assert "error" in fits["unet"]["no_offset"]
    table = exponent_table(fits, variable="params")
    assert [r["family"] for r in table] == ["fno", "mgno", "unet"]
    assert table[0]["b (a·X^-b)"].startswith("0.4") or table[0]["b (a·X^-b)"].startswith("0.3")
    assert table[2]["b (a·X^-b)"] == "n/a"
    assert math.isfinite(fits["mgno"]["with_offset"]["b"])
