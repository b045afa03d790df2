"""MgNO computing on a refined grid: the interpolation onto it, reading back, and the model identity."""

from __future__ import annotations

import pytest
import torch

from pdesurrogates.models import (
    MgNOConfig,
    build,
    levels_for_grid,
    load_checkpoint,
    save_checkpoint,
)
from pdesurrogates.nn.hierarchy import GridRefinement, refined_shape


def _points(n, kind):
    i = torch.arange(n, dtype=torch.float64)
    return i / (n - 1) if kind == "node" else i / n


@pytest.mark.parametrize("kind", ["node", "half-open", "periodic"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_refinement_contains_the_input_points_and_is_exact_on_linear_functions(kind, factor):
    """``back(up(x)) == x`` bit for bit, and an affine field is interpolated exactly (node grids:
    everywhere; half-open: up to the last input point, constant beyond it; periodic: the affine
    part wraps, so only a constant field is kept exactly)."""
    n = 9 if kind == "node" else 8
    r = GridRefinement((n, n - 1 if kind == "node" else n), (kind, kind), factor, dtype=torch.float64)
    x = torch.randn(2, 3, *r.shape, dtype=torch.float64)
    assert r.fine_shape == refined_shape(r.shape, (kind, kind), factor)
    assert torch.equal(r.back(r.up(x)), x)
    xs, ys = (_points(m, kind) for m in r.shape)
    fine_x, fine_y = (_points(m, kind) for m in r.fine_shape)
    affine = lambda a, b: 1.0 + 2.0 * a[:, None] - 3.0 * b[None, :]
    up = r.up(affine(xs, ys))
    if kind == "periodic":
        const = torch.full(r.shape, 0.7, dtype=torch.float64)
        assert torch.allclose(r.up(const), torch.full(r.fine_shape, 0.7, dtype=torch.float64))
        # the fine points past the last input point interpolate towards the first one
        field = affine(xs, ys)
        assert torch.isclose(up[-1, 0], field[-1, 0] / factor + field[0, 0] * (1 - 1 / factor))
        return
    keep_x = fine_x <= xs[-1] + 1e-12
    keep_y = fine_y <= ys[-1] + 1e-12
    exact = affine(fine_x, fine_y)
    assert torch.allclose(up[keep_x][:, keep_y], exact[keep_x][:, keep_y], atol=1e-12)
    if kind == "half-open":  # beyond the last point: the last point's value
        assert torch.allclose(up[~keep_x][:, keep_y], up[keep_x][-1:, keep_y].expand(int((~keep_x).sum()), -1))


def test_refined_shapes_and_refusals():
    assert refined_shape((17, 16, 16), ("node", "half-open", "periodic"), 2) == (33, 32, 32)
    assert refined_shape((5,), ("node",), 1) == (5,)
    with pytest.raises(ValueError, match="cell-centred grid does not contain"):
        refined_shape((16,), ("cell",), 2)
    with pytest.raises(ValueError, match="int >= 1"):
        refined_shape((16,), ("node",), 0)
    assert levels_for_grid((16, 16), grid_kind="half-open", refine=2) == levels_for_grid((32, 32), grid_kind="half-open")
    assert levels_for_grid((33, 33), refine=4) == levels_for_grid((129, 129)) == 6
    cfg = MgNOConfig(grid_kind="half-open", refine=2).fitted_to_grid((16, 16))
    assert (cfg.levels, cfg.train_grid) == (4, (16, 16))
    for bad, match in [({"refine": 0}, "refine must be an int >= 1"), ({"refine": True}, "refine must be an int"),
                       ({"refine": 2, "variant": "legacy", "levels": 3}, "needs the consistent variant"),
                       ({"refine": 2, "grid_kind": "cell"}, "not 'cell'")]:
        with pytest.raises(ValueError, match=match):
            MgNOConfig(**bad)
    MgNOConfig(refine=2, grid_kind="cell", padding_mode="circular")  # periodic cells are points i / n: they nest


@pytest.mark.parametrize("grid_kind,train,finer", [("half-open", (16, 16), (32, 32)), ("node", (17, 17), (33, 33))])
def test_refined_model_is_the_plain_model_on_the_interpolated_input(grid_kind, train, finer):
    """A ``refine=2`` MgNO is, weight for weight, the ``refine=1`` MgNO trained on the refined grid,
    applied to the interpolated input and read back at the input's points: at the training grid and
    zero-shot on a 2x finer one (both compute their weights on the same grids)."""
    torch.manual_seed(0)
    cfg = MgNOConfig(width=6, n_layers=2, grid_kind=grid_kind, grid_channels=True, refine=2).fitted_to_grid(train)
    refined = build(cfg).double().eval()
    fine_train = refined_shape(train, (grid_kind,) * 2, 2)
    plain = build(MgNOConfig(width=6, n_layers=2, grid_kind=grid_kind, grid_channels=True).fitted_to_grid(fine_train))
    assert plain.state_dict().keys() == refined.state_dict().keys()
    plain = plain.double().eval()
    plain.load_state_dict(refined.state_dict())
    for shape in (train, finer):
        x = torch.randn(2, 1, *shape, dtype=torch.float64)
        r = GridRefinement(shape, (grid_kind,) * 2, 2, dtype=torch.float64)
        with torch.no_grad():
            out = refined(x)
            assert out.shape == x.shape
            assert torch.allclose(out, r.back(plain(r.up(x))), atol=1e-12)
            # the hierarchy runs under the refined grid, anchored at the refined training grid
            assert refined.hierarchy(r.up(x)).levels[0].shape == r.fine_shape


def test_refined_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = MgNOConfig(width=4, n_layers=2, grid_kind="half-open", refine=2).fitted_to_grid((8, 8))
    model = build(cfg).eval()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ckpt", model, cfg))
    assert loaded.config == cfg and loaded.config.refine == 2
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.model(x), model(x))
