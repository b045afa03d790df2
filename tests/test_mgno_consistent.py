"""Mesh-consistent MgNO: grid hierarchy, transfers, h-scaled stencils, the V-cycle under refinement."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from pdesurrogates.models import MgNOConfig, build, levels_for_grid
from pdesurrogates.nn.hierarchy import Hierarchy, LinearTransfer, axis_kinds, grid_hierarchy
from pdesurrogates.nn.multigrid import ConsistentMgConv, MgConv
from pdesurrogates.nn.stencils import DifferenceOperator, ScaledStencil, difference_basis


def _slope(h, e):
    """Fitted order p of e ~ h**p."""
    return float(np.polyfit(np.log(h), np.log(e), 1)[0])


def _points(n, kind):
    i = torch.arange(n, dtype=torch.float64)
    return {"node": i / (n - 1), "cell": (i + 0.5) / n, "half-open": i / n, "periodic": i / n}[kind]


def _dense(fn, n_in):
    """Matrix of a linear map on 1D fields, column by column."""
    return torch.stack([fn(torch.eye(n_in, dtype=torch.float64)[j]) for j in range(n_in)], dim=1)


# ---- hierarchy ------------------------------------------------------------------------------------

def test_hierarchy_is_counted_from_the_coarsest_grid():
    """A grid twice as fine adds one level on top; the coarse levels are the same grids."""
    for kind, sizes in [("node", [17, 33, 65, 129]), ("cell", [16, 32, 64]), ("periodic", [16, 32, 64]),
                        ("half-open", [16, 32])]:
        previous = None
        for n in sizes:
            levels = grid_hierarchy((n, n), (kind, kind), coarsest=4)
            if previous is not None:
                assert levels[1:] == previous
            previous = levels
        assert previous[-1].shape == ((5, 5) if kind == "node" else (4, 4)) and previous[-1].scale == 0
        assert all(math.isclose(h, 0.25) for h in previous[-1].spacing)
    # other sizes sit on top of the same canonical grids (5, 9, 17, ... nodes)
    for n, expected in [(18, [18, 9, 5]), (20, [20, 9, 5]), (85, [85, 33, 17, 9, 5]), (141, [141, 65, 33, 17, 9, 5])]:
        levels = grid_hierarchy((n,), ("node",), coarsest=4)
        assert [lev.shape[0] for lev in levels] == expected
        assert [lev.scale for lev in levels] == list(range(len(expected) - 1, -1, -1))
    # anisotropic: the short axis stays at its input size until the long one reaches its scale
    shapes = [lev.shape for lev in grid_hierarchy((64, 16), ("cell", "cell"), coarsest=4)]
    assert shapes == [(64, 16), (32, 16), (16, 16), (8, 8), (4, 4)]
    # a padded grid keeps the domain's spacing; its canonical grids cover the padded extent
    padded = grid_hierarchy((21,), ("node",), coarsest=4, spacing=(1 / 16,))
    assert [lev.shape[0] for lev in padded] == [21, 11, 6] and math.isclose(padded[-1].spacing[0], 0.25)
    assert levels_for_grid((16, 16)) == 3 and levels_for_grid((65, 65)) == 5 and levels_for_grid((18, 18)) == 3
    assert axis_kinds((33, 32)) == ("node", "node") and axis_kinds((33,), "cell") == ("cell",)
    assert [lev.shape for lev in grid_hierarchy((32,), ("half-open",))] == [(32,), (16,), (8,), (4,)]
    # a non-canonical training grid anchors its scale for finer inputs only
    for n, expected in [(141, [141, 85, 33, 17, 9, 5]), (211, [211, 129, 85, 33, 17, 9, 5]), (97, [97, 85, 33, 17, 9, 5]),
                        (85, [85, 33, 17, 9, 5]), (65, [65, 33, 17, 9, 5]), (33, [33, 17, 9, 5])]:
        levels = grid_hierarchy((n, n), ("node", "node"), coarsest=4, anchor=(85, 85))
        assert [lev.shape[0] for lev in levels] == expected, n
    anchored = grid_hierarchy((141, 141), ("node", "node"), coarsest=4, anchor=(85, 85))[1]
    assert anchored.scale == 4 and math.isclose(anchored.spacing[0], 1 / 84)
    with pytest.raises(ValueError, match="anchor must give"):
        grid_hierarchy((33, 33), ("node", "node"), anchor=(85,))
    with pytest.raises(ValueError, match="grid axis kind"):
        grid_hierarchy((8,), ("nodes",))
    with pytest.raises(ValueError, match="coarsest must be an int >= 2"):
        grid_hierarchy((8,), ("cell",), coarsest=1)
    with pytest.raises(ValueError, match="grid_kind must be"):
        axis_kinds((8,), "vertex")


@pytest.mark.parametrize("kind,n_fine", [("node", 17), ("node", 20), ("cell", 16), ("cell", 13), ("half-open", 16),
                                         ("half-open", 11)])
def test_prolongation_is_exact_on_linear_functions(kind, n_fine):
    levels = grid_hierarchy((n_fine,), (kind,), coarsest=4)
    T = LinearTransfer(levels[0], levels[1], dtype=torch.float64)
    xc, xf = _points(levels[1].shape[0], kind), _points(n_fine, kind)
    g = lambda x: 2.0 - 3.0 * x
    fine = T.prolong(g(xc))
    if kind != "node":  # constant extrapolation beyond the outermost coarse points
        inside = (xf >= xc[0]) & (xf <= xc[-1])
        assert torch.allclose(fine[inside], g(xf)[inside], atol=1e-13)
        assert torch.allclose(fine[xf > xc[-1]], g(xc[-1]).expand(int((xf > xc[-1]).sum())), atol=1e-13)
    else:
        assert torch.allclose(fine, g(xf), atol=1e-13)


@pytest.mark.parametrize("kind,n_fine", [("node", 17), ("node", 22), ("cell", 16), ("half-open", 16), ("periodic", 16),
                                         ("periodic", 10)])
def test_restriction_is_the_row_normalised_transpose_of_prolongation(kind, n_fine):
    levels = grid_hierarchy((n_fine,), (kind,), coarsest=4)
    T = LinearTransfer(levels[0], levels[1], dtype=torch.float64)
    nc = levels[1].shape[0]
    P, R = _dense(T.prolong, nc), _dense(T.restrict, n_fine)
    assert torch.allclose(R, P.T / P.sum(0)[:, None], atol=1e-14)
    assert torch.allclose(R.sum(1), torch.ones(nc, dtype=torch.float64))  # keeps constants
    if n_fine in (16, 17) and kind != "cell":  # nested grids: full weighting inside
        assert torch.allclose(R[3, 5:8], torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64))
    if kind == "periodic" and n_fine == 16:  # circulant: a shift by one coarse point is two fine ones
        assert torch.allclose(torch.roll(R, (1, 2), (0, 1)), R)


def test_periodic_interpolation_is_second_order():
    errors, hs = [], []
    for n in (8, 16, 32, 64):
        levels = grid_hierarchy((2 * n,), ("periodic",), coarsest=4)
        T = LinearTransfer(levels[0], levels[1], dtype=torch.float64)
        g = lambda x: torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x)
        errors.append((T.prolong(g(_points(n, "periodic"))) - g(_points(2 * n, "periodic"))).abs().max().item())
        hs.append(1 / n)
    assert abs(_slope(hs, errors) - 2) < 0.2, errors


# ---- stencils -------------------------------------------------------------------------------------

def test_difference_basis_terms():
    for ndim, count in [(1, 3), (2, 6), (3, 10)]:
        stencils, axes = difference_basis(ndim)
        assert stencils.shape == (count, *([3] * ndim)) and len(axes) == count
        # every term but the identity annihilates constants
        assert torch.allclose(stencils.flatten(1).sum(1), torch.tensor([1.0] + [0.0] * (count - 1),
                                                                        dtype=torch.float64))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_difference_operator_converges_to_its_differential_operator(ndim):
    """A = c0 + c1 d_x + c2 d_xx (+ c3 d_yy + c4 d_x d_y in 2D/3D) on sin/cos fields: second order."""
    torch.manual_seed(0)
    op = DifferenceOperator(1, 1, ndim, padding_mode="circular", unit=0.25).double()
    _, axes = difference_basis(ndim)
    coef = {(): 0.7, (0,): -1.3, (0, 0): 0.4}
    if ndim > 1:
        coef.update({(1, 1): -0.9, (0, 1): 0.6})
    with torch.no_grad():
        op.weight.zero_()
        for t, a in enumerate(axes):
            op.weight[t] = coef.get(a, 0.0) / 0.25 ** len(a)  # the weights act on h / unit
    errors, hs = [], []
    sizes = (8, 16, 32, 64) if ndim < 3 else (8, 16, 32)
    for n in sizes:
        x = [_points(n, "periodic")] * ndim
        X = torch.meshgrid(*x, indexing="ij")
        k = 2 * math.pi
        u = torch.sin(k * X[0])
        du = {(): u, (0,): k * torch.cos(k * X[0]), (0, 0): -k * k * u}
        if ndim > 1:
            u = torch.sin(k * X[0]) * torch.cos(k * X[1])
            du = {(): u, (0,): k * torch.cos(k * X[0]) * torch.cos(k * X[1]), (0, 0): -k * k * u,
                  (1, 1): -k * k * u, (0, 1): -k * k * torch.cos(k * X[0]) * torch.sin(k * X[1])}
        exact = sum(coef[a] * du[a] for a in coef)
        got = op(u[None, None], (1 / n,) * ndim)[0, 0]
        errors.append((got - exact).abs().max().item())
        hs.append(1 / n)
    assert abs(_slope(hs, errors) - 2) < 0.2, errors


def test_scaled_stencil_scales_with_the_squared_spacing():
    torch.manual_seed(0)
    S = ScaledStencil(2, 3, 2, unit=0.25).double()
    f = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    a, b = S(f, (0.25, 0.25)), S(f, (0.125, 0.125))
    assert torch.allclose(a, 4 * b, atol=1e-14)
    assert torch.allclose(a, torch.nn.functional.conv2d(f, S.weight, padding=1), atol=1e-14)


# ---- the V-cycle ----------------------------------------------------------------------------------

def test_consistent_mgconv_gradcheck_and_linearity():
    torch.manual_seed(0)
    mg = ConsistentMgConv(2, 3, 2, levels=2, smoothing=(2, 1), post_smooth=1).double()
    f = torch.randn(1, 2, 9, 8, dtype=torch.float64, requires_grad=True)
    assert gradcheck(mg, (f,))
    g = torch.randn_like(f)
    with torch.no_grad():
        assert torch.allclose(mg(2 * f - 3 * g), 2 * mg(f) - 3 * mg(g), atol=1e-12)


def test_consistent_mgconv_is_the_v_cycle_written_out():
    """Grids of 33, 17, 9, 5 nodes with three working levels: the 33-node grid only passes data
    through; the cycle by hand from the layer's own blocks."""
    torch.manual_seed(0)
    mg = ConsistentMgConv(1, 2, 1, levels=3, smoothing=(2, 1, 1)).double()
    H = mg.hierarchy(torch.zeros(1, 1, 33, dtype=torch.float64))
    assert [lev.shape for lev in H.levels] == [(33,), (17,), (9,), (5,)]
    h = [lev.spacing for lev in H.levels]
    R = [T.restrict for T in H.transfers]
    P = [T.prolong for T in H.transfers]
    f0 = torch.randn(1, 1, 33, dtype=torch.float64)

    def res(A, u, f, hh):
        r = f - A(u, hh)
        r[..., 0] = r[..., -1] = 0  # boundary nodes carry data
        return r

    A2, A1 = mg.A[2], mg.A[1]  # weight sets count from the coarsest grid
    f1 = R[0](f0)
    u1 = mg.pre[2][0](f1, h[1])
    u1 = u1 + mg.pre[2][1](res(A2, u1, f1, h[1]), h[1])
    f2 = R[1](res(A2, u1, f1, h[1]))
    u2 = mg.pre[1][0](f2, h[2])
    f3 = R[2](res(A1, u2, f2, h[2]))
    u3 = mg.pre[0][0](f3, h[3])
    u0 = P[0](u1 + P[1](u2 + P[2](u3)))
    assert torch.allclose(mg(f0), u0, atol=1e-13)


def _smooth_input(n, kind, ndim=2):
    """Two smooth channels on an ``n**ndim`` grid (vanishing on the boundary unless periodic)."""
    X = torch.meshgrid(*[_points(n, kind)] * ndim, indexing="ij")
    if kind == "periodic":
        a = math.prod(torch.cos(2 * math.pi * (x + 0.1 * d)) for d, x in enumerate(X))
        b = torch.sin(2 * math.pi * sum(X))
    else:
        a = math.prod(torch.sin(math.pi * x) for x in X)
        b = (torch.sin(2 * math.pi * X[0]) * math.prod(torch.sin(math.pi * x) for x in X[1:])) ** 2
    return torch.stack([a, b])[None]


def _refinement_errors(mg, kind, sizes, ndim=2):
    outs = [mg(_smooth_input(n, kind, ndim)).detach() for n in sizes]
    pool = {1: torch.nn.functional.avg_pool1d, 2: torch.nn.functional.avg_pool2d, 3: torch.nn.functional.avg_pool3d}
    errors = []
    for coarse, fine in itertools.pairwise(outs):
        # node and periodic grids share every other point; cell centres: average the 2^d children
        on_coarse = pool[ndim](fine, 2) if kind == "cell" else fine[(...,) + (slice(None, None, 2),) * ndim]
        errors.append(((coarse - on_coarse).norm() / coarse.norm()).item())
    return errors


@pytest.mark.parametrize("kind,padding_mode,correction,ndim", [
    ("node", "zeros", "residual", 2), ("cell", "zeros", "residual", 2), ("periodic", "circular", "residual", 2),
    ("node", "zeros", "rhs", 2), ("periodic", "circular", "residual", 1), ("node", "zeros", "residual", 3)])
def test_consistent_vcycle_converges_under_refinement(kind, padding_mode, correction, ndim):
    """Same random weights on grids 2x, 4x, 8x finer, every grid working (``levels`` covers them):
    the outputs approach one function at second order. With fewer levels the finer grids only
    pass data through, and the outputs converge too. The paper's V-cycle (fixed level count) has
    no limit: its error stays O(1)."""
    torch.manual_seed(0)
    sizes = {1: [16, 32, 64, 128], 2: [16, 32, 64, 128], 3: [9, 17, 33]}[ndim]
    if kind == "node":
        sizes = [n + 1 if n % 2 == 0 else n for n in sizes]
    for levels in (6, 3):
        mg = ConsistentMgConv(2, 3, ndim, levels=levels, padding_mode=padding_mode, correction=correction,
                              grid_kind=kind if kind != "periodic" else "node").double()
        errors = _refinement_errors(mg, kind, sizes, ndim)
        assert errors[-1] < 3e-2 and _slope([1 / n for n in sizes[:-1]], errors) > 1.8, (levels, errors)
    if kind == "node" and ndim == 2 and correction == "residual":
        legacy = MgConv(2, 3, 2, levels=4).double()
        assert min(_refinement_errors(legacy, kind, sizes)) > 0.1


def test_consistent_mgno_default_input_sizes_and_errors():
    """Any grid size runs; bad options are named."""
    torch.manual_seed(0)
    model = build(MgNOConfig(width=4, n_layers=2, levels=2))
    for shape in [(16, 16), (17, 17), (33, 20), (7, 5), (3, 3)]:
        assert model(torch.randn(2, 1, *shape)).shape == (2, 1, *shape)
    padded = build(MgNOConfig(width=4, n_layers=1, levels=2, domain_padding=0.25))
    H = padded.hierarchy(torch.zeros(1, 1, 17, 17))
    assert H.levels[0].shape == (21, 21) and math.isclose(H.levels[0].spacing[0], 1 / 16)
    with pytest.raises(ValueError, match="MgNOConfig.variant must be one of"):
        MgNOConfig(variant="new")
    with pytest.raises(ValueError, match="MgNOConfig.coarsest must be an int >= 2"):
        MgNOConfig(coarsest=1)
    with pytest.raises(ValueError, match="MgNOConfig.correction must be one of"):
        MgNOConfig(correction="fas")
    with pytest.raises(ValueError, match="MgNOConfig.grid_kind must be one of"):
        MgNOConfig(grid_kind="vertex")
    with pytest.raises(ValueError, match="finest and the coarsest"):
        MgNOConfig(levels=2, smoothing=(1, 0))
    with pytest.raises(ValueError, match="does not match the hierarchy"):
        ConsistentMgConv(1, 2)(torch.zeros(1, 1, 8, 8), Hierarchy((9, 9), ("node", "node")))


def test_mgno_parameters_do_not_depend_on_resolution():
    """The same weights serve every grid; on a grid with fewer levels only the coarse sets work."""
    torch.manual_seed(0)
    model = build(MgNOConfig(width=4, n_layers=2, levels=3))
    n_params = sum(p.numel() for p in model.parameters())
    for n in (17, 33, 65):
        model.zero_grad()
        model(torch.randn(1, 1, n, n)).square().mean().backward()
        assert all(p.grad is not None for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_params
    model.zero_grad()
    model(torch.randn(1, 1, 9, 9)).square().mean().backward()  # 9, 5: the finest set is unused
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert unused and all(".2." in name for name in unused)


def test_training_grid_anchors_finer_inputs():
    """Trained on a grid that is not a canonical one (21 nodes; its scale's canonical grid has 17),
    a finer input computes on the training grid: the output on 41-161 nodes is the training-grid
    output interpolated, to about 1%. Without the anchor the weights act on the 17-node grid and the
    outputs differ by 6.5%."""
    torch.manual_seed(0)
    cfg = MgNOConfig(width=4, n_layers=2).fitted_to_grid((21, 21))
    assert cfg.train_grid == (21, 21)
    model = build(cfg).double()
    canonical = build(MgNOConfig(**{**cfg.__dict__, "train_grid": None})).double()
    canonical.load_state_dict(model.state_dict())

    def field(n):
        t = torch.linspace(0, 1, n, dtype=torch.float64)
        x, y = torch.meshgrid(t, t, indexing="ij")
        return (torch.sin(math.pi * x) * torch.sin(2 * math.pi * y) + x * y)[None, None]

    with torch.no_grad():
        coarse = model(field(21))
        for n in (41, 81, 161):
            ref = torch.nn.functional.interpolate(coarse, size=(n, n), mode="bilinear", align_corners=True)
            anchored = float((model(field(n)) - ref).norm() / ref.norm())
            plain = float((canonical(field(n)) - ref).norm() / ref.norm())
            assert anchored < 0.02 and anchored < plain / 4, (n, anchored, plain)
    with pytest.raises(ValueError, match="train_grid must give 2 ints"):
        MgNOConfig(train_grid=(85,))


def test_fitted_to_grid_sets_the_levels_of_the_training_grid():
    assert MgNOConfig().fitted_to_grid((33, 33)).levels == 4
    assert MgNOConfig(padding_mode="circular", ndim=1).fitted_to_grid((1024,)).levels == 9
    assert MgNOConfig(grid_kind="half-open").fitted_to_grid((16, 16)).levels == 3
    legacy = MgNOConfig(variant="legacy", levels=4)
    assert legacy.fitted_to_grid((129, 129)) == legacy
    with pytest.raises(ValueError, match="smoothing gives 3 step counts but a grid of shape \\(65, 65\\) has 5"):
        MgNOConfig(smoothing=(1, 1, 2)).fitted_to_grid((65, 65))


def test_checkpoint_without_variant_loads_as_legacy(tmp_path):
    """A checkpoint saved before the consistent variant existed (no ``variant`` and no new fields in
    its config) loads as the paper's V-cycle with its weights; new configs default to consistent."""
    import json

    from pdesurrogates.models import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    cfg = MgNOConfig(width=4, n_layers=2, levels=3, variant="legacy")
    model = build(cfg)
    path = save_checkpoint(tmp_path / "old", model, cfg)
    meta = json.loads((path / "config.json").read_text())
    for key in ("variant", "coarsest", "grid_kind", "correction"):
        del meta["model"][key]
    (path / "config.json").write_text(json.dumps(meta))
    loaded = load_checkpoint(path)
    assert loaded.config == cfg
    x = torch.randn(2, 1, 12, 12)
    assert torch.equal(loaded.model(x), model.eval()(x))
    assert MgNOConfig().variant == "consistent"
