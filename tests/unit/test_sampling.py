"""Point sets of ``points.sampling``: in the unit cube, keyed (the same set for the same key),
more even than random points, used by every set of a batch independently of the rank's
block, and checked in the case file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import qmc

from ddpinn.decomposition import decompose
from ddpinn.geometry import Box
from ddpinn.geometry.sampling import UNIT_SAMPLERS, unit_samples
from ddpinn.io.config import ConfigError, PointsSection, load
from ddpinn.pdes import PDES
from ddpinn.problem import build_problem
from ddpinn.training.points import build_points, rng_for
from ddpinn.training.resampling import r3_points


@pytest.mark.parametrize("name", sorted(UNIT_SAMPLERS))
@pytest.mark.parametrize("n", [0, 1, 37, 256])
def test_sets_lie_in_the_unit_cube_and_follow_their_key(name, n):
    a = unit_samples(name, n, 3, rng_for(5, 1, 2))
    b = unit_samples(name, n, 3, rng_for(5, 1, 2))
    c = unit_samples(name, n, 3, rng_for(5, 1, 3))
    assert a.shape == (n, 3)
    assert np.all((a >= 0) & (a < 1))
    np.testing.assert_array_equal(a, b)
    if n > 1:
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["sobol", "halton"])
def test_low_discrepancy_sets_are_more_even_than_random_points(name):
    """Centred L2 discrepancy of 1000 points in 4D, over 5 keys: every low-discrepancy set
    below the best of the random ones."""
    n, d = 1000, 4
    rand = [qmc.discrepancy(unit_samples("uniform", n, d, rng_for(k))) for k in range(5)]
    low = [qmc.discrepancy(unit_samples(name, n, d, rng_for(k))) for k in range(5)]
    assert max(low) < 0.5 * min(rand), (low, rand)


def test_a_batch_draws_every_set_from_the_sampling_and_is_block_independent():
    pde = PDES["heat"](2)
    d = decompose(Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ("x", "y", "t")), [2, 1, 2],
                  time_axis=2)
    pts = PointsSection(interior=64, boundary=16, interface=16, sampling="sobol")
    full = build_points(d, list(range(d.n_subdomains)), pde, pts, 3, pde.params, 2)
    alone = build_points(d, [2], pde, pts, 3, pde.params, 2)
    rows = alone.x.shape[1]
    assert torch.equal(full.x[2, :rows], alone.x[0])
    # The interior rows of subdomain 0 are the scrambled Sobol set of its key.
    lower, upper = d.lower[0], d.upper[0]
    unit = unit_samples("sobol", 64, 3, rng_for(3, 1, 0, 0))
    np.testing.assert_allclose(full.x[0, :64].numpy(), lower + unit * (upper - lower))
    uniform = build_points(d, [0], pde, PointsSection(interior=64, boundary=16, interface=16),
                           3, pde.params, 2)
    assert not torch.equal(uniform.x[0, :64], full.x[0, :64])
    # The first boundary face's rows and the first interface's rows differ from the uniform
    # draws too (rows: 64 interior, 16 per boundary face, then 16 per interface).
    start = 64 + 16 * len(d.boundary_faces(0, 2))
    for rows in (slice(64, 80), slice(start, start + 16)):
        assert not torch.equal(uniform.x[0, rows], full.x[0, rows])


def test_r3_refills_from_the_sampling():
    box = Box((0.0, 0.0), (1.0, 2.0), ("x", "t"))
    points = np.random.default_rng(0).random((8, 2))
    magnitude = np.arange(8.0)  # the upper half is kept
    new = r3_points(points, magnitude, box, 1, 250, 0, "halton")
    np.testing.assert_array_equal(new[:4], points[4:])
    unit = unit_samples("halton", 4, 2, rng_for(1, 5, 250, 0))
    np.testing.assert_allclose(new[4:], unit * [1.0, 2.0])


DECK = ('[case]\nname = "p"\n{domain}\n[decomposition]\ngrid = [2, 1]\n'
        '[pde]\nname = "poisson"\n[points]\nsampling = "{sampling}"\n')
BOX = "[domain]\nlower = [0.0, 0.0]\nupper = [1.0, 1.0]"
DISK = '[domain.shape]\ntype = "disk"\ncenter = [0.5, 0.5]\nradius = 0.5'


def test_an_unknown_sampling_is_refused_with_the_choices(tmp_path):
    deck = tmp_path / "case.toml"
    deck.write_text(DECK.format(domain=BOX, sampling="lhs"))
    with pytest.raises(ConfigError, match=r"points.sampling.*sobol"):
        load(deck)
    deck.write_text(DECK.format(domain=BOX, sampling="halton"))
    assert load(deck).points.sampling == "halton"


def test_a_shaped_domain_refuses_low_discrepancy_points(tmp_path):
    deck = tmp_path / "case.toml"
    deck.write_text(DECK.format(domain=DISK, sampling="sobol"))
    with pytest.raises(ConfigError, match=r"'points.sampling'.*domain.shape"):
        build_problem(load(deck))
