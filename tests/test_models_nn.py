"""Building blocks: float64 gradcheck, the V-cycle against a hand-written one, patching vs neuraloperator."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from pdesurrogates.nn import (
    DomainPadding,
    MgConv,
    MultigridPatching,
    Prolongation,
    Restriction,
    Smoother,
    coordinate_channels,
    crop_to,
    pad_to_multiple,
)


def _f64(module):
    torch.manual_seed(0)
    return module.double()


@pytest.mark.parametrize("ndim,size", [(1, 9), (2, 7), (3, 4)])
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_gradcheck_smoother(ndim, size, padding_mode):
    smoother = _f64(Smoother(3, 2, ndim, padding_mode=padding_mode))  # 3x3 S and A, as MgNO
    u = torch.randn(2, 3, *([size] * ndim), dtype=torch.float64, requires_grad=True)
    f = torch.randn(2, 2, *([size] * ndim), dtype=torch.float64, requires_grad=True)
    assert gradcheck(smoother, (u, f))
    first = _f64(Smoother(3, 2, ndim, first=True, padding_mode=padding_mode))
    assert gradcheck(lambda f: first(None, f), (f,))


@pytest.mark.parametrize("ndim,size", [(1, 9), (2, 7), (2, 8), (3, 4)])
def test_gradcheck_restriction_and_prolongation(ndim, size):
    restrict = _f64(Restriction(3, 2, ndim))
    u = torch.randn(2, 3, *([size] * ndim), dtype=torch.float64, requires_grad=True)
    f = torch.randn(2, 2, *([size] * ndim), dtype=torch.float64, requires_grad=True)
    assert gradcheck(restrict, (u, f))
    uc, fc = restrict(u, f)
    coarse = (size + 1) // 2
    assert uc.shape[2:] == (coarse,) * ndim and fc.shape[1] == 2
    uc = uc.detach().requires_grad_()
    for mode in ("zeros", "circular"):
        prolong = _f64(Prolongation(3, ndim, padding_mode=mode))
        assert gradcheck(lambda v, p=prolong: p(v, (size,) * ndim), (uc,))
    assert prolong(uc, (size,) * ndim).shape == u.shape


def test_gradcheck_mgconv():
    mg = _f64(MgConv(2, 3, 2, levels=3, post_smooth=1))
    f = torch.randn(1, 2, 9, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(mg, (f,))


def test_prolongation_rejects_mismatched_grids():
    with pytest.raises(ValueError, match=r"coarse grid \(4, 4\) does not match fine grid \(9, 9\)"):
        Prolongation(1, 2)(torch.zeros(1, 1, 4, 4), (9, 9))


def test_mgconv_is_the_v_cycle_written_out():
    """MgConv with 3 levels equals the V-cycle written with F.conv2d on its own weights."""
    torch.manual_seed(0)
    mg = MgConv(2, 3, 2, levels=3, smoothing=(1, 1, 2), post_smooth=1).double()
    f0 = torch.randn(2, 2, 11, 9, dtype=torch.float64)

    def conv(w, x, stride=1):
        return F.conv2d(x, w, stride=stride, padding=1)

    def smooth(block, u, f):
        return u + conv(block.S.weight, f - conv(block.A.weight, u))

    u0 = conv(mg.pre[0][0].S.weight, f0)                                       # finest: u = S f
    u1, f1 = conv(mg.restrict[0].Pi.weight, u0, 2), conv(mg.restrict[0].R.weight, f0, 2)
    u1 = smooth(mg.pre[1][0], u1, f1)
    u2, f2 = conv(mg.restrict[1].Pi.weight, u1, 2), conv(mg.restrict[1].R.weight, f1, 2)
    u2 = smooth(mg.pre[2][1], smooth(mg.pre[2][0], u2, f2), f2)                # 2 steps, coarsest
    assert u2.shape[2:] == (3, 3)
    up = F.conv_transpose2d(u2, mg.prolong[1].P.weight, stride=2, padding=1)[..., :6, :5]
    u1 = smooth(mg.post[1][0], u1 + up, f1)
    up = F.conv_transpose2d(u1, mg.prolong[0].P.weight, stride=2, padding=1)[..., :11, :9]
    u0 = smooth(mg.post[0][0], u0 + up, f0)
    assert torch.allclose(mg(f0), u0, rtol=1e-12, atol=1e-12)


def test_mgconv_is_linear():
    """A V-cycle is a linear operator f -> u (MgNO's premise): exact to round-off in float64."""
    torch.manual_seed(0)
    mg = MgConv(2, 4, 2, levels=4).double()
    f, g = torch.randn(2, 1, 2, 13, 16, dtype=torch.float64)
    assert torch.allclose(mg(2.5 * f - 0.5 * g), 2.5 * mg(f) - 0.5 * mg(g), atol=1e-12)


@pytest.mark.parametrize("ndim", [1, 2])
def test_mgconv_circular_padding_is_translation_equivariant(ndim):
    """With circular padding the V-cycle commutes exactly with shifts by 2**(levels-1) points."""
    torch.manual_seed(0)
    mg = MgConv(1, 2, ndim, levels=3, padding_mode="circular", post_smooth=1).double()
    f = torch.randn(1, 1, *([16] * ndim), dtype=torch.float64)
    dims, shifts = tuple(range(2, 2 + ndim)), (4, -8)[:ndim]
    assert torch.allclose(mg(torch.roll(f, shifts, dims)), torch.roll(mg(f), shifts, dims), atol=1e-12)
    # an odd shift is not a symmetry of a strided V-cycle: the test above can fail
    assert not torch.allclose(mg(torch.roll(f, 1, 2)), torch.roll(mg(f), 1, 2), atol=1e-6)


def test_circular_prolongation_is_periodic_transposed_convolution():
    """Periodic prolongation == zero-padded transposed convolution of a tiled input, centre cut out."""
    torch.manual_seed(0)
    prolong = Prolongation(2, 2, padding_mode="circular").double()
    u = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    tiled = u.repeat(1, 1, 3, 3)
    full = F.conv_transpose2d(tiled, prolong.P.weight, stride=2, padding=1)
    assert torch.allclose(prolong(u, (10, 8)), full[..., 10:20, 8:16], atol=1e-13)


def test_mgconv_argument_errors():
    with pytest.raises(ValueError, match="one step count per level"):
        MgConv(1, 2, levels=3, smoothing=(1, 1))
    with pytest.raises(ValueError, match=">= 1 on the finest"):
        MgConv(1, 2, levels=2, smoothing=(0, 2))
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        Smoother(1, 1, padding_mode="periodic")
    with pytest.raises(ValueError, match="ndim must be 1, 2 or 3"):
        Smoother(1, 1, ndim=4)


# ---- multigrid patching -------------------------------------------------------------------------

@pytest.mark.parametrize("levels,fraction,size", [(1, 0.125, 16), (1, 0.0, 8), (2, 0.0625, 32), (1, 0.25, 12)])
def test_patching_matches_neuralop(levels, fraction, size):
    """Our n-D patching reproduces neuraloperator's MultigridPatching2D windows exactly (square grids)."""
    from neuralop.training.patching import MultigridPatching2D

    x = torch.randn(3, 2, size, size)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its settings on construction
        ref = MultigridPatching2D(torch.nn.Identity(), levels=levels, padding_fraction=fraction)
    expected, _ = ref.patch(x, x)
    ours = MultigridPatching(levels, fraction)
    patches = ours.patch(x)
    assert torch.equal(patches, expected)
    stitched_ref, _ = ref.unpatch(expected[:, :2], x, evaluation=True)
    assert torch.equal(ours.stitch(patches[:, :2], x.shape[2:]), stitched_ref)


@pytest.mark.parametrize("shape", [(2, 3, 32), (2, 1, 16, 24), (1, 2, 8, 8, 16)])
def test_patching_round_trip_and_context(shape):
    mg = MultigridPatching(levels=2 if len(shape) < 5 else 1, padding_fraction=0.1)
    x = torch.randn(*shape)
    p = mg.patch(x)
    n = mg.n_patches ** (len(shape) - 2)
    assert p.shape[0] == shape[0] * n and p.shape[1] == shape[1] * (mg.levels + 1)
    assert torch.equal(mg.stitch(p[:, : shape[1]], shape[2:]), x)
    # coarsest context channel: window of the input subsampled by 2**levels, periodic
    step = 2 ** mg.levels
    sub = x[(slice(None), slice(None)) + (slice(None, None, step),) * (len(shape) - 2)]
    assert set(p[:, -shape[1]:].unique().tolist()) <= set(sub.unique().tolist())


def test_patching_errors():
    with pytest.raises(ValueError, match="divisible by 4"):
        MultigridPatching(2).patch(torch.zeros(1, 1, 18, 16))
    with pytest.raises(ValueError, match=">= 16"):
        MultigridPatching(2).patch(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="expected patches"):
        MultigridPatching(1).stitch(torch.zeros(3, 1, 4, 4), (8, 8))


# ---- padding and coordinates ----------------------------------------------------------------------

def test_padding_helpers():
    x = torch.randn(2, 3, 10, 7)
    padded, spatial = pad_to_multiple(x, 4)
    assert padded.shape == (2, 3, 12, 8) and spatial == (10, 7)
    assert torch.equal(crop_to(padded, spatial), x) and padded[..., 10:, :].abs().sum() == 0
    rep, _ = pad_to_multiple(x, 4, mode="replicate")
    assert torch.equal(rep[..., 11, :7], x[..., 9, :])
    for mode, shape in [("one-sided", (12, 8)), ("symmetric", (14, 9))]:
        pad = DomainPadding(0.2, mode)  # round(0.2 * 10) = 2, round(0.2 * 7) = 1 points
        y = pad.pad(x)
        assert y.shape[2:] == shape and torch.equal(pad.unpad(y, x.shape[2:]), x)
        assert torch.count_nonzero(y) == torch.count_nonzero(x)  # padding is zeros
    with pytest.raises(ValueError, match="domain_padding must be a finite fraction"):
        DomainPadding(-0.1)


def test_coordinate_channels():
    c = coordinate_channels(torch.zeros(2, 5, 3, 4, 1))
    assert c.shape == (2, 3, 3, 4, 1)
    assert torch.equal(c[0, 0, :, 0, 0], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(c[1, 1, 0, :, 0], torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert torch.equal(c[0, 2], torch.zeros(3, 4, 1))
