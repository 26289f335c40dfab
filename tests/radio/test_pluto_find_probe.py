"""The TX-offset calibration's probe search (radio.drivers.pluto.find_probe): a probe is found to the sample with a
clear peak; a window that holds no probe (the DAC played zeros in loopback) gives no peak, whatever argmax says."""

from __future__ import annotations

import numpy as np

from radio.drivers.pluto import find_probe


def _probe(m=2048):
    rng = np.random.default_rng(0x9A1)
    return (0.5 * np.exp(2j * np.pi * rng.random(m))).astype(np.complex64)


def test_a_probe_in_noise_is_found_to_the_sample_with_a_clear_peak():
    p = _probe()
    rng = np.random.default_rng(1)
    y = (0.05 * (rng.standard_normal(20000) + 1j * rng.standard_normal(20000))).astype(np.complex64)
    y[12345:12345 + p.size] += 0.3 * p
    i, psr = find_probe(y, p)
    assert i == 12345
    assert psr > 8.0


def test_a_window_of_zeros_has_no_peak():
    # measured in a cell: a recalibration read only zeros, took argmax 0 (offset -2 x lead) with an infinite ratio
    i, psr = find_probe(np.zeros(20000, np.complex64), _probe())
    assert psr == 0.0


def test_noise_alone_gives_a_ratio_below_the_calibration_threshold():
    rng = np.random.default_rng(2)
    y = (rng.standard_normal(20000) + 1j * rng.standard_normal(20000)).astype(np.complex64)
    assert find_probe(y, _probe())[1] < 8.0
