"""The figures a person reads in TensorBoard: colour scales that show the valleys, colour bars,
whole-number ticks for a discrete z (ebm_cli/plots)."""

import math

import pytest
import torch
from matplotlib.colors import LogNorm

from ebm_cli.plots import latent as lv
from ebm_cli.plots.figures import render
from ebm_cli.plots.landscape import DECADES, FLAT, plot_landscape


def valley_landscape(r: int = 41):
    """F(x, y) = 500 (y - 0.5 x)^2 + walls: a valley a few units deep under walls of hundreds."""
    xs, ys = torch.linspace(-1, 1, r), torch.linspace(-1.2, 1.2, r)
    f = 500 * (ys[:, None] - 0.5 * xs[None, :]) ** 2 + 3 * torch.cos(6 * xs)[None, :]
    return xs, ys, f


def heat_maps(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_landscape_colour_scale_is_logarithmic_with_its_bar():
    xs, ys, f = valley_landscape()
    fig = plot_landscape(xs, ys, f)
    (im,) = heat_maps(fig)
    rel = f - f.min(dim=0, keepdim=True).values
    assert isinstance(im.norm, LogNorm)
    assert im.norm.vmax == pytest.approx(float(rel.max()))
    assert im.norm.vmin == pytest.approx(float(rel.max()) * 10.0 ** -DECADES)
    # a barrier of 1 % of the walls' height is half-way up the scale, not in the darkest shade
    assert 0.3 < im.norm(0.01 * float(rel.max())) < 0.7
    assert len(fig.axes) == 2 and "log scale" in fig.axes[1].get_ylabel()  # the colour bar
    assert render(fig).shape[2] == 3


def test_beta_panels_share_one_colour_scale_and_one_bar():
    xs, ys, f = valley_landscape()
    maps = [f, 2 * f, 4 * f]
    fig = lv.plot_beta_landscapes(xs, ys, maps, [1.0, 10.0, math.inf])
    images = heat_maps(fig)
    assert len(images) == 3 and len({(im.norm.vmin, im.norm.vmax) for im in images}) == 1
    assert images[0].norm.vmax == pytest.approx(float((4 * f - (4 * f).min(dim=0).values).max()))
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4  # three panels and one colour bar
    render(fig)


def test_discrete_z_gets_whole_number_ticks_and_a_colour_bar():
    ys, z = torch.linspace(-1, 1, 30), torch.arange(3.0)[:, None]
    e = torch.rand(2, 3, 30) * 10
    fig = lv.plot_joint(ys, z, e, [-0.5, 0.5], "z value")
    fig.canvas.draw()
    for ax in fig.axes[:2]:
        assert all(float(t).is_integer() for t in ax.get_yticks())
    assert len(fig.axes) == 3 and "log scale" in fig.axes[2].get_ylabel()
    usage = lv.plot_usage(torch.tensor([0.5, 0.3, 0.2]), discrete=True)
    usage.canvas.draw()
    assert all(float(t).is_integer() for t in usage.axes[0].get_xticks())
    title = usage.axes[0].title
    assert usage.axes[0].get_window_extent().x0 >= 0 and title.get_window_extent().x0 >= 0  # not clipped
    assert title.get_window_extent().x1 <= usage.bbox.x1
    ribbon = lv.plot_ribbon(z, torch.rand(2, 3), [-0.5, 0.5], "z value")
    ribbon.canvas.draw()
    assert all(float(t).is_integer() for t in ribbon.axes[0].get_xticks())


def test_a_flat_or_diverged_landscape_still_draws():
    xs, ys, f = valley_landscape()
    flat = plot_landscape(xs, ys, torch.zeros_like(f) + 1e-7 * torch.rand_like(f))
    (im,) = heat_maps(flat)
    assert im.norm.vmax == pytest.approx(FLAT)  # float noise is not stretched over the whole scale
    broken = f.clone()
    broken[3, 4], broken[5, 6] = float("nan"), float("inf")
    (im,) = heat_maps(plot_landscape(xs, ys, broken))
    assert math.isfinite(im.norm.vmax) and math.isfinite(im.norm.vmin)
    render(plot_landscape(xs, ys, broken))
    fig = lv.plot_joint(torch.linspace(-1, 1, 5), torch.arange(1.0)[:, None], torch.full((1, 1, 5), float("nan")), [0.0], "z value")
    render(fig)


def test_slices_fall_inside_the_data_x_range_unless_given(tmp_path):
    """A user's x in [0, 4] gets its slice panels at 1, 2 and 3 (not at -0.5, 0, 0.5, off its data);
    the default curves' x in [-1, 1] keeps -0.5, 0, 0.5; logger.slice_x given is used as it is."""
    from types import SimpleNamespace

    from ebm_cli.datasets.curves import CurvesCSV
    from ebm_cli.plots.figures import slice_points

    path = tmp_path / "wide.csv"
    path.write_text("x,y\n" + "".join(f"{4 * i / 99:.6f},{k + 0.1 * i / 99:.6f}\n" for i in range(100) for k in (-1, 1)))
    data = CurvesCSV(path=str(path), seed=0)
    assert slice_points(SimpleNamespace(slice_x=None), data) == [1.0, 2.0, 3.0]
    default = SimpleNamespace(x_range=(-1.0, 1.0))
    assert slice_points(SimpleNamespace(slice_x=None), default) == [-0.5, 0.0, 0.5]
    assert slice_points(SimpleNamespace(slice_x=[3.5]), data) == [3.5]
