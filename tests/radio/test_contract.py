"""The Radio contract (radio/base.py) checked against every driver: loopback, zmq (a broker in a thread), an emulated
Pluto (iiod emulator + the unmodified pyadi-iio driver on the in-process air) and the USRP driver on the UHD test
double (its clock in host time, as strict as the hardware).

Each driver is set up as a *bench*: a transmitting and a receiving radio (the same radio for the USRP, whose TX is
looped back to its RX by the double) and a link delay D in samples. The contract points:

- **late TX**: ``tx(x, at)`` with ``at`` in the past raises :class:`radio.base.LateError`.
- **timed RX**: ``rx(n, at)`` with ``at`` ahead returns ``t0 == at``; samples that are gone are a LateError, never
  another ``t0``.
- **stream continuity**: consecutive ``rx(n)`` (``at=None``) calls continue at ``t0 + n``, and a burst that straddles
  the boundary of two calls is whole in their concatenation (normalized correlation with the sent burst ≥ 0.99).
- **capabilities match behaviour**: a burst sent at ``at`` arrives at ``at + D`` exactly when ``timed_tx``; within
  ``timing_accuracy_samples`` otherwise; ``simulated`` is what the driver is.
- **close**: idempotent; the radio is a context manager that closes on exit and lets exceptions through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from radio.base import LateError, Radio

#: burst length (samples) and RMS amplitude of the probe burst
BURST = 256
AMPLITUDE = 0.25
DELAY = 7


@dataclasses.dataclass
class Bench:
    tx: Radio
    rx: Radio
    delay: int                       # samples from tx time to rx time on the link
    simulated: bool                  # what capabilities.simulated must say
    lead: int                        # samples ahead of time_now() that a scheduled burst needs
    reopen: Callable[[], Radio]      # a fresh radio of this driver (for the close/context-manager checks)
    cleanup: list


def _burst(seed: int = 1) -> np.ndarray:
    """QPSK burst, complex64[BURST], RMS amplitude AMPLITUDE (constant envelope: no clipping anywhere)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 4, BURST)
    return (AMPLITUDE * np.exp(1j * (np.pi / 4 + np.pi / 2 * bits))).astype(np.complex64)


def _arrival(y: np.ndarray, t0: int, x: np.ndarray) -> tuple[int, float]:
    """Sample time of ``x`` in ``y`` (which starts at ``t0``) by the peak of the cross-correlation, and the
    normalized correlation |<y_k, x>| / (|y_k| |x|) at the peak (1 for an undistorted copy)."""
    c = np.abs(np.correlate(y, x, mode="valid"))
    k = int(np.argmax(c))
    seg = y[k:k + x.size]
    rho = float(c[k] / (np.linalg.norm(seg) * np.linalg.norm(x) + 1e-30))
    return t0 + k, rho


# ------------------------------------------------------------------------------------------------ benches
def _loopback() -> Bench:
    from radio.drivers.loopback import loopback_pair
    from radio.sim.channel import LinkParams

    tx, rx = loopback_pair(None, LinkParams(delay_samples=DELAY), seed=1, sample_rate=1e6)
    return Bench(tx, rx, DELAY, True, 1000, lambda: loopback_pair(seed=2)[1], [tx.close, rx.close])


def _zmq() -> Bench:
    from radio.drivers.zmq import ZmqRadio
    from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
    from radio.sim.air import Air
    from radio.sim.channel import LinkParams

    air = Air(1e6, 2.4e9, seed=3, link_overrides={("tx", "rx"): LinkParams(delay_samples=DELAY)})
    broker = ChannelBroker(air, BrokerConfig(endpoints=["rx"], heartbeat_timeout_s=5), bind="tcp://127.0.0.1:0")
    broker.__enter__()
    # the transmitter neither receives nor holds the broker's clock (one thread drives both endpoints)
    tx = ZmqRadio(broker.endpoint, "tx", hold_clock=False, receive=False, timeout_s=5)
    rx = ZmqRadio(broker.endpoint, "rx", timeout_s=5)
    return Bench(tx, rx, DELAY, True, 1000,
                 lambda: ZmqRadio(broker.endpoint, "other", hold_clock=False, receive=False, timeout_s=5),
                 [tx.close, rx.close, lambda: broker.__exit__(None, None, None)])


def _pluto() -> Bench:
    try:
        import adi  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"pyadi-iio and the system libiio0 are needed ({exc})")
    from lab.config import load_config
    from radio.drivers.pluto import PlutoRadio
    from radio.sim.air import Air
    from tests.radio.test_pluto import EMULATED

    cfg = load_config(EMULATED, ["air.snr_db=40", "radio.sample_rate=1e6", "radio.args.rx_buffer_size=4096",
                                 "radio.args.tx_buffer_size=1024",
                                 f"air.links={{'tx->rx': {{'delay_samples': {DELAY}}}}}"])
    air = Air.from_config(cfg.air, cfg.radio.sample_rate, cfg.radio.center_freq)
    tx = PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=air, endpoint="tx")
    rx = PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=air, endpoint="rx")
    return Bench(tx, rx, DELAY, True, 2 * 4096,
                 lambda: PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=air, endpoint="other"),
                 [tx.close, rx.close])


def _usrp() -> Bench:
    from radio.drivers.usrp import UsrpArgs, UsrpRadio
    from tests.radio.uhd_double import make_uhd

    def make():
        uhd, dev, _ = make_uhd()
        dev.wallclock = True                      # the device clock runs in host time: late is really late
        dev.loop_delay = DELAY
        dev.rx_source = lambda t: np.zeros(t.size, np.complex64)
        return UsrpRadio(1e6, 2.45e9, 0.0, 0.0, UsrpArgs(args="type=b200", master_clock_rate=16e6), uhd_module=uhd)

    radio = make()
    return Bench(radio, radio, DELAY, False, 50_000, make, [radio.close])


BENCHES = {"loopback": _loopback, "zmq": _zmq, "pluto-emulated": _pluto, "usrp-double": _usrp}

#: (test, bench) -> why the driver breaks that contract point today (driver defects, reported to the radio engineers;
#: strict: the test fails as soon as the driver is fixed, so that the marker is removed)
#: (test, driver) -> why that driver breaks that point of the contract today (a strict expected failure: the test
#: fails once the driver is fixed, until the entry is removed). Empty: every driver keeps the whole contract.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


@pytest.fixture(params=list(BENCHES), ids=list(BENCHES))
def bench(request):
    reason = KNOWN_DEFECTS.get((request.node.originalname, request.param))
    if reason:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    b = BENCHES[request.param]()
    yield b
    for close in reversed(b.cleanup):
        close()


# ------------------------------------------------------------------------------------------------ the contract
def test_late_tx_raises_lateerror(bench: Bench):
    bench.rx.rx(2000)                               # the clock has moved past 2000 samples
    now = bench.tx.time_now()
    with pytest.raises(LateError) as info:
        bench.tx.tx(_burst(), at=now - 100)
    assert info.value.at == now - 100


def test_timed_rx_starts_at_the_asked_sample_or_raises(bench: Bench):
    at = bench.rx.time_now() + bench.lead
    y, t0 = bench.rx.rx(1000, at=at)
    assert t0 == at and y.dtype == np.complex64 and y.shape == (1000,)
    y, t0 = bench.rx.rx(500)
    assert t0 == at + 1000                          # at=None continues after the timed capture
    try:
        _, t_past = bench.rx.rx(10, at=at - 10 * bench.lead)  # long gone, or still buffered
    except LateError:
        return
    assert t_past == at - 10 * bench.lead


def test_stream_continues_without_gaps_and_bursts_land_as_declared(bench: Bench):
    """A burst straddling the boundary of two rx(n) calls is whole in their concatenation and arrives at at + D:
    exactly for timed_tx radios, within timing_accuracy_samples for host-timed ones."""
    caps = bench.rx.capabilities
    assert caps.simulated == bench.simulated and bench.tx.capabilities.simulated == bench.simulated
    x = _burst()
    _, t_first = bench.rx.rx(1000)
    at = bench.tx.time_now() + bench.lead
    t_sent = bench.tx.tx(x, at=at)
    assert t_sent == at
    stream_pos = t_first + 1000
    split = at + bench.delay + BURST // 2             # the boundary falls in the middle of the burst
    n_a = split - stream_pos
    slack = int(bench.tx.capabilities.timing_accuracy_samples) + 256
    y_a, t_a = bench.rx.rx(n_a)
    y_b, t_b = bench.rx.rx(BURST + slack)
    assert t_a == stream_pos and t_b == t_a + n_a, "rx(at=None) must continue where the previous rx ended"
    arrival, rho = _arrival(np.concatenate([y_a, y_b]), t_a, x)
    assert rho >= 0.99, f"the burst is not whole across the rx boundary (normalized correlation {rho:.3f})"
    error = arrival - (at + bench.delay)
    if bench.tx.capabilities.timed_tx:
        assert error == 0, f"timed_tx declared but the burst arrived {error:+d} samples off"
    else:
        assert abs(error) <= bench.tx.capabilities.timing_accuracy_samples, (
            f"burst {error:+d} samples off; capabilities say ±{bench.tx.capabilities.timing_accuracy_samples}")


def test_close_is_idempotent_and_the_radio_is_a_context_manager(bench: Bench):
    radio = bench.reopen()
    with radio as entered:
        assert entered is radio
    radio.close()                                   # a second close is harmless
    other = bench.reopen()
    with pytest.raises(KeyError):                   # exceptions pass through the with block
        with other:
            raise KeyError("inside")
    other.close()
