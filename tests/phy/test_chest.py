"""phy.chest: the single-path ML delay search and its search range."""

import numpy as np

from phy.chest import ml_delay

M = np.array([k for k in range(-26, 27) if k != 0], dtype=np.float64)   # wifi64 used subcarriers
N = 64


def _response(taps: dict[float, complex]) -> np.ndarray:
    return sum(g * np.exp(-2j * np.pi * M * d / N) for d, g in taps.items())


def test_single_path_delay_is_found_inside_the_range():
    tau, h = ml_delay(_response({0.37: 0.8j}), M, N, 0.0, span=1.0)
    assert abs(tau - 0.37) < 1e-3
    assert abs(h - 0.8j) < 1e-2


def test_optimum_outside_the_range_returns_the_edge_not_an_extrapolation():
    """A channel spread over -1..3 samples (a TDL-A beacon channel from a failing sync trial) has its single-path optimum
    beyond 1 sample,
    outside 0 ± 1: the search must stay on the range's edge, for every noise draw (it used to extrapolate a flat
    parabola to anywhere between 0.4 and 10.5 samples, which moved a device's beacon timing by that much)."""
    h = _response({-1: 0.078j, 0: 0.029 - 0.326j, 1: 0.253 + 0.272j, 2: 0.252 + 0.390j, 3: 0.045 - 0.165j})
    rng = np.random.default_rng(1)
    taus = []
    for _ in range(50):
        noise = 0.05 * (rng.standard_normal(M.size) + 1j * rng.standard_normal(M.size))
        taus.append(ml_delay(h + noise, M, N, 0.0, span=1.0)[0])
    assert np.all(np.abs(taus) <= 1.0 + 1e-12), (min(taus), max(taus))
    assert np.ptp(taus) < 0.25, np.ptp(taus)
    wide, _ = ml_delay(h, M, N, 0.0, span=4.0)
    assert 1.0 < wide < 3.0          # with a wide enough range the optimum itself is found
