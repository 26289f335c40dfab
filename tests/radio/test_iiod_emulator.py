"""The iiod PlutoSDR emulator against the REAL libiio client (pylibiio + pyadi-iio's adi.Pluto, iio_info).

Every server binds 127.0.0.1 port 0. pyadi objects are torn down buffers-first (libiio 0.x frees a buffer through
its context), see :func:`close_sdr`.
"""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radio.sim.air import Air
from radio.sim.channel import LinkParams
from radio.servers.iiod_emulator import (CommandError, PlutoEmulator, parse_command,
                                 start_emulated_pluto)
from radio.drivers.loopback import LoopbackRadio
from radio.servers.pluto_context import RX_FULL_SCALE, TX_FULL_SCALE

try:
    import adi
    WHY = ""
except (ImportError, OSError) as exc:     # OSError: pylibiio present but the system libiio0 missing
    adi, WHY = None, f"pyadi-iio and the system libiio0 are needed for the client tests ({exc})"
#: tests that use the real libiio client (the raw-protocol tests below run without it)
needs_iio = pytest.mark.skipif(adi is None, reason=WHY or "libiio is installed")
pytestmark = pytest.mark.iio


def close_sdr(sdr) -> None:
    """Destroy an adi.Pluto's buffers before its context."""
    sdr.tx_destroy_buffer()
    sdr.rx_destroy_buffer()
    sdr._ctx = None


def random_words(rng, n: int, amplitude: float = 0.5) -> np.ndarray:
    """complex128 [n] of integer-valued I/Q words (exactly representable in int16) at ``amplitude``·TX_FULL_SCALE."""
    x = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * amplitude * TX_FULL_SCALE / np.sqrt(2)
    return np.clip(np.rint(x.real), -32768, 32767) + 1j * np.clip(np.rint(x.imag), -32768, 32767)


@needs_iio
def test_iio_info_lists_the_pluto_context(served):
    """Debian's iio_info (libiio 0.24) parses the context (DTD-validated XML) and reads every attribute."""
    if shutil.which("iio_info") is None:
        pytest.skip("iio_info (Debian libiio-utils) not installed")
    _, uri = served()
    out = subprocess.run(["iio_info", "-u", uri], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    for line in ("iio:device0: ad9361-phy", "iio:device2: cf-ad9361-dds-core-lpc", "iio:device3: cf-ad9361-lpc",
                 "voltage0:  (input, index: 0, format: le:S12/16>>0)",
                 "voltage0:  (output, index: 0, format: le:S16/16>>0)",
                 "altvoltage0: RX_LO (output)", "frequency value: 2400000000", "loopback value: 0"):
        assert line in out.stdout, line
    assert "ERROR" not in out.stdout


@needs_iio
def test_every_pyadi_property_round_trips(served):
    """Each adi.Pluto setter reaches the emulator and the getter reads back the value written (stored exactly)."""
    _, uri = served()
    sdr = adi.Pluto(uri=uri)
    try:
        for rate in (10_000_000, 1_000_000):       # 1 MS/s takes pyadi's FIR + tx_path_rates path
            sdr.sample_rate = rate
            assert sdr.sample_rate == rate
        assert sdr.filter == [128.0, 4.0, 128.0, 4.0]          # the FIR pyadi loaded: 128 taps, decimation 4
        sdr.rx_lo, sdr.tx_lo = 915_000_000, 920_000_000
        assert (sdr.rx_lo, sdr.tx_lo) == (915_000_000, 920_000_000)
        sdr.rx_rf_bandwidth, sdr.tx_rf_bandwidth = 3_000_000, 2_000_000
        assert (sdr.rx_rf_bandwidth, sdr.tx_rf_bandwidth) == (3_000_000, 2_000_000)
        for mode in ("fast_attack", "slow_attack", "manual"):
            sdr.gain_control_mode_chan0 = mode
            assert sdr.gain_control_mode_chan0 == mode
        sdr.rx_hardwaregain_chan0 = 42.5
        assert sdr.rx_hardwaregain_chan0 == 42.5
        sdr.tx_hardwaregain_chan0 = -17.25
        assert sdr.tx_hardwaregain_chan0 == -17.25
        for mode in (2, 1, 0):
            sdr.loopback = mode
            assert sdr.loopback == mode
        sdr.dds_frequencies = [1000, 2000, 3000, 4000]
        assert sdr.dds_frequencies == ["1000", "2000", "3000", "4000"]
        with pytest.raises(OSError):               # the driver's -EINVAL surfaces as OSError in the client
            sdr.gain_control_mode_chan0 = "turbo"
        with pytest.raises(OSError):
            sdr.tx_hardwaregain_chan0 = 5          # TX hardwaregain is an attenuation: <= 0 dB
        with pytest.raises(OSError):
            sdr.loopback = 3
        assert sdr.loopback == 0 and sdr.gain_control_mode_chan0 == "manual"
    finally:
        close_sdr(sdr)


@needs_iio
def test_digital_loopback_is_sample_exact_and_contiguous(served, rng):
    """loopback=1: RX words equal the TX words exactly, consecutive rx() buffers continue the stream."""
    _, uri = served()
    sdr = adi.Pluto(uri=uri)
    try:
        sdr.loopback = 1
        sdr.rx_buffer_size = 1000
        x1, x2 = random_words(rng, 1500), random_words(rng, 1500)
        sdr.tx(x1)
        sdr.tx(x2)                                  # non-cyclic buffers queue back to back
        y = np.concatenate([sdr.rx() for _ in range(4)])
        np.testing.assert_array_equal(y[:3000], np.concatenate([x1, x2]))
        np.testing.assert_array_equal(y[3000:], 0)  # the DAC outputs zeros once the queue ran dry
    finally:
        close_sdr(sdr)


@needs_iio
def test_cyclic_buffer_repeats_until_closed(served, rng):
    """A cyclic TX buffer repeats with continuous phase, y[t] = x[t mod N]; destroying it stops the repetition."""
    _, uri = served()
    sdr = adi.Pluto(uri=uri)
    try:
        sdr.loopback = 1
        sdr.tx_cyclic_buffer = True
        sdr.rx_buffer_size = 1500
        x = random_words(rng, 1000)
        sdr.tx(x)
        y = np.concatenate([sdr.rx() for _ in range(4)])
        np.testing.assert_array_equal(y, np.tile(x, 6))
        sdr.tx_destroy_buffer()
        np.testing.assert_array_equal(sdr.rx(), 0)
    finally:
        close_sdr(sdr)


@needs_iio
def test_through_the_air_gain_and_noise_follow_theory(served, rng):
    """TX attenuation A, link gain g, receiver noise N0, manual RX gain G (dB): the RX words are
    2**11·10^(G/20)·(g·10^(A/20)·x/2**14 + w), so y − expected has variance 10^(G/10)·N0 + 2·Δ²/12 with Δ = 2**-11
    (uniform ADC rounding of I and Q); checked against the sample variance (relative std 1/√N)."""
    air = Air(1e6, 2.4e9, seed=7)
    noise, g, att_db, gain_db = 1e-3, 0.5, -6.0, 4.0
    rf = LoopbackRadio(air, "p", noise_power=noise)
    air.set_link("p", "p", LinkParams(gain=g))
    _, uri = served(rf)
    sdr = adi.Pluto(uri=uri)
    try:
        sdr.gain_control_mode_chan0 = "manual"
        sdr.rx_hardwaregain_chan0 = gain_db
        sdr.tx_hardwaregain_chan0 = att_db
        sdr.rx_buffer_size = 40_000
        x = random_words(rng, 30_000)
        sdr.tx(x)
        y = sdr.rx() / RX_FULL_SCALE
        gr = 10 ** (gain_db / 20)
        expected = gr * g * 10 ** (att_db / 20) * x / TX_FULL_SCALE
        err = y[:30_000] - expected
        theory = gr ** 2 * noise + 2 * (1 / RX_FULL_SCALE) ** 2 / 12
        assert abs(np.var(err) / theory - 1) < 5 / np.sqrt(err.size)
        assert abs(np.mean(err)) < 5 * np.sqrt(theory / err.size)
        idle = y[30_000:]                                    # noise only after the burst
        assert abs(np.var(idle) / theory - 1) < 5 / np.sqrt(idle.size)
    finally:
        close_sdr(sdr)


@needs_iio
def test_rf_loopback_applies_gains_and_adc_rounding(served, rng):
    """loopback=2 (RF loopback inside the chip, no air): y = round(2**11 · 10^(G/20) · 10^(A/20) · x / 2**14) per
    component (to within one LSB where float32 rounding meets a .5 boundary)."""
    _, uri = served()
    sdr = adi.Pluto(uri=uri)
    try:
        sdr.loopback = 2
        sdr.tx_hardwaregain_chan0 = -6
        sdr.gain_control_mode_chan0 = "manual"
        sdr.rx_hardwaregain_chan0 = 3
        sdr.rx_buffer_size = 2000
        x = random_words(rng, 2000, amplitude=0.4)
        sdr.tx(x)
        y = sdr.rx()
        expected = np.rint(RX_FULL_SCALE * 10 ** (3 / 20) * 10 ** (-6 / 20) * x / TX_FULL_SCALE)
        diff = np.abs((y - expected).view(np.float64))
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.99
    finally:
        close_sdr(sdr)


@needs_iio
def test_rx_adc_clips_at_12_bits(served):
    """An input above full scale saturates at the 12-bit ADC limits [-2048, 2047]."""
    air = Air(1e6, 2.4e9, seed=1)
    rf = LoopbackRadio(air, "p", noise_power=0.0)
    air.set_link("p", "p", LinkParams(gain=4.0))
    _, uri = served(rf)
    sdr = adi.Pluto(uri=uri)
    try:
        sdr.tx_hardwaregain_chan0 = 0
        sdr.gain_control_mode_chan0 = "manual"
        sdr.rx_hardwaregain_chan0 = 0
        sdr.rx_buffer_size = 100
        sdr.tx(np.full(100, TX_FULL_SCALE * (1 - 1j)))
        y = sdr.rx()
        assert np.all(y == 2047 - 2048j)
    finally:
        close_sdr(sdr)


@needs_iio
def test_two_clients_stream_concurrently(served, rng):
    """Two contexts on one emulator (each buffer on its own connection): one transmits, the other receives."""
    _, uri = served()
    tx, rx = adi.Pluto(uri=uri), adi.Pluto(uri=uri)
    try:
        tx.loopback = 1
        rx.rx_buffer_size = 512
        x = random_words(rng, 512)
        tx.tx(x)
        np.testing.assert_array_equal(rx.rx(), x)
        assert rx.loopback == 1                     # attributes are device state, shared by all clients
    finally:
        close_sdr(tx)
        close_sdr(rx)


def _session(port: int):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock, sock.makefile("rb")


def _ask(sock, f, line: bytes) -> int:
    sock.sendall(line)
    return int(f.readline())


def test_malformed_and_unknown_commands_get_negative_errno(served):
    """Every bad request gets -errno on its own line; the connection keeps working afterwards."""
    server, _ = served()
    sock, f = _session(server.port)
    try:
        assert _ask(sock, f, b"FROBNICATE\r\n") == -errno.EINVAL
        assert _ask(sock, f, b"ZPRINT\r\n") == -errno.EINVAL
        assert _ask(sock, f, b"\r\n\r\nTIMEOUT 2500\r\n") == 0
        assert _ask(sock, f, b"READ iio:device9 sampling_frequency\r\n") == -errno.ENODEV
        assert _ask(sock, f, b"READ iio:device0 INPUT voltage7 hardwaregain\r\n") == -errno.ENOENT
        assert _ask(sock, f, b"READ iio:device0 DEBUG nosuch\r\n") == -errno.ENOENT
        assert _ask(sock, f, b"GETTRIG iio:device3\r\n") == -errno.ENOENT
        assert _ask(sock, f, b"READBUF iio:device3 4096\r\n") == -errno.EBADF
        assert _ask(sock, f, b"OPEN iio:device3 0 00000003\r\n") == -errno.EINVAL
        assert _ask(sock, f, b"OPEN iio:device3 16 0000000g\r\n") == -errno.EINVAL
        assert _ask(sock, f, b"OPEN iio:device0 16 00000001\r\n") == -errno.ENODEV
        assert _ask(sock, f, b"WRITE iio:device0 INPUT voltage0 hardwaregain 4\r\nabc\0") == -errno.EINVAL
        assert _ask(sock, f, b"WRITE iio:device0 DEBUG loopback 2\r\n7\0") == -errno.EINVAL
        assert _ask(sock, f, b"X" * 10_000 + b"\r\n") == -errno.EINVAL
        assert _ask(sock, f, b"\xff\xfe garbage\r\n") == -errno.EINVAL
        assert _ask(sock, f, b"READ iio:device0 INPUT voltage0 hardwaregain\r\n") == len(b"71.000000 dB\0")
        assert f.readline() == b"71.000000 dB\0\n"
        # direct_reg_access (libiio's iio_device_reg_read/write): "ADDR VALUE" writes, "ADDR" selects for reading
        def reg(dev: bytes, text: bytes) -> int:
            return _ask(sock, f, b"WRITE " + dev + b" DEBUG direct_reg_access %d\r\n" % (len(text) + 1) + text + b"\0")

        def reg_value(dev: bytes) -> bytes:
            n = _ask(sock, f, b"READ " + dev + b" DEBUG direct_reg_access\r\n")
            return f.read(n + 1)[:-2]
        assert reg(b"iio:device2", b"0x10 0x1234") > 0 and reg(b"iio:device2", b"0x10") > 0
        assert reg_value(b"iio:device2") == b"0x1234"
        assert reg(b"iio:device2", b"0x80000088 0x6") > 0 and reg(b"iio:device2", b"0x80000088") > 0
        assert reg_value(b"iio:device2") == b"0x0"              # DMA status: write-1-to-clear, never set
        assert reg(b"iio:device2", b"zz") == -errno.EINVAL
        assert _ask(sock, f, b"OPEN iio:device3 16 00000003\r\n") == 0
        assert _ask(sock, f, b"READBUF iio:device3 6\r\n") == -errno.EINVAL      # not whole 4-byte samples
        assert _ask(sock, f, b"READBUF iio:device3 8\r\n") == 8
        assert f.readline() == b"00000003\n" and len(f.read(8)) == 8
        assert _ask(sock, f, b"CLOSE iio:device3\r\n") == 0
    finally:
        sock.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_parser_never_fails_other_than_commanderror(line):
    """Fuzz: any text either parses into a Command or raises CommandError with a positive errno."""
    try:
        cmd = parse_command(line)
    except CommandError as exc:
        assert exc.code > 0
    else:
        assert cmd.name == line.split()[0].upper()


@pytest.fixture(scope="module")
def fuzz_server():
    server, _ = start_emulated_pluto(None)
    yield server
    server.close()


_WORDS = [b"iio:device0", b"iio:device2", b"iio:device3", b"ad9361-phy", b"INPUT", b"OUTPUT", b"DEBUG", b"BUFFER",
          b"voltage0", b"altvoltage0", b"frequency", b"loopback", b"hardwaregain", b"16", b"00000003", b"00000001",
          b"CYCLIC", b"-1", b"0", b"99999999999999999999", b"BUFFERS_COUNT"]
_COMMANDS = [b"READ", b"OPEN", b"READBUF", b"CLOSE", b"GETTRIG", b"SETTRIG", b"SET", b"TIMEOUT", b"PRINT",
             b"ZPRINT", b"VERSION", b"HELP", b"BINARY"]
_LINE = st.one_of(
    st.binary(max_size=60),
    st.builds(lambda c, args: b" ".join([c, *args]), st.sampled_from(_COMMANDS),
              st.lists(st.sampled_from(_WORDS), max_size=5)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE.filter(lambda b: b"\n" not in b), min_size=1, max_size=8))
def test_server_survives_random_command_lines(fuzz_server, lines):
    """Fuzz over the socket (random bytes and random valid-word commands): the server never dies and afterwards
    PRINT still returns the XML."""
    server = fuzz_server
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        # WRITE/WRITEBUF would take the following lines as their payload: keep them out of this stream test
        payload = b"".join(line + b"\r\n" for line in lines
                           if line.decode("latin-1").upper().split()[:1] not in (["WRITE"], ["WRITEBUF"]))
        sock.sendall(payload + b"EXIT\r\n")
        while sock.recv(65536):
            pass
    finally:
        sock.close()
    sock, f = _session(server.port)
    try:
        n = _ask(sock, f, b"PRINT\r\n")
        assert n > 1000 and b"<context" in f.read(n)
    finally:
        sock.close()


def test_preset_rejects_invalid_values():
    """Config presets are validated like client writes (ValueError naming the attribute)."""
    emu = PlutoEmulator(None)
    try:
        emu.preset(sample_rate=4e6, center_freq=915e6, tx_gain=-3, rx_gain=20, gain_control_mode="manual")
        assert emu.values[("iio:device0", "in_voltage_sampling_frequency")] == "4000000"
        with pytest.raises(ValueError, match="frequency"):
            emu.preset(center_freq=10e9)
    finally:
        emu.close()


GNURADIO_FLOWGRAPH = r"""
import sys, time
import numpy as np
from gnuradio import analog, blocks, gr, iio
uri, rate, amplitude = sys.argv[1], 2_000_000, float(sys.argv[2])
tb = gr.top_block()
src = iio.fmcomms2_source_fc32(uri, [True, True], 16384)
src.set_len_tag_key("")
src.set_frequency(2_400_000_000); src.set_samplerate(rate)
src.set_gain_mode(0, "manual"); src.set_gain(0, 0)
snk = iio.fmcomms2_sink_fc32(uri, [True, True], 16384, False)
snk.set_len_tag_key("")
snk.set_frequency(2_400_000_000); snk.set_samplerate(rate); snk.set_attenuation(0, 0)
tone = analog.sig_source_c(rate, analog.GR_COS_WAVE, 100_000, amplitude, 0)
keep = blocks.vector_sink_c()
tb.connect(tone, snk)
tb.connect(src, keep)
tb.start()
deadline = time.monotonic() + 20
while len(keep.data()) < 300_000 and time.monotonic() < deadline:
    time.sleep(0.05)
tb.stop(); tb.wait()
y = np.array(keep.data())
# the median power of 1000-sample blocks of the last 200,000: a block where the tone is missing (the DAC ran dry while
# this host was busy, as a real Pluto's would) must not pull the level down, as it did the plain mean (0.165 vs 0.251)
tail = y[-200_000:]
blocks_ = np.abs(tail[:tail.size // 1000 * 1000].reshape(-1, 1000)) ** 2
print(y.size, float(np.median(blocks_.mean(axis=1))), flush=True)
# gr-iio 3.10.5 can hang at interpreter exit when a source and a sink share a context (a block destructor joins
# a status-polling thread that keeps running; each block alone exits cleanly): the result is printed, leave now
import os
os._exit(0)
"""


def test_gnuradio_iio_blocks_stream_through_the_emulator(served, tmp_path):
    """GNU Radio 3.10's gr-iio (system Python, libiio 0.24, unmodified) streams a tone through the emulated Pluto and
    the air. gr-iio scales fc32 by 2**15 on TX and 2**-11 on RX, so a tone of amplitude a arrives with mean power
    (a·2**15/2**14)² + N0 (self-link gain 1, receiver noise N0), measured as the median over 1000-sample blocks (a
    block the DAC left empty while the host was busy does not count: CI, 7 Dec, measured 0.165 for 0.251 by the mean;
    alone it failed 1 run in 3 that way)."""
    import shutil as _shutil
    python = _shutil.which("python3", path="/usr/bin")
    if python is None or subprocess.run([python, "-c", "from gnuradio import iio"], capture_output=True,
                                        timeout=60).returncode != 0:
        pytest.skip("GNU Radio with gr-iio (Debian gnuradio, system python3) not installed")
    air = Air(2e6, 2.4e9, seed=5)
    noise = 1e-3
    rf = LoopbackRadio(air, "p", noise_power=noise)
    air.set_link("p", "p", LinkParams())
    _, uri = served(rf)
    script = tmp_path / "flowgraph.py"
    script.write_text(GNURADIO_FLOWGRAPH)
    amplitude = 0.25
    out = subprocess.run([python, str(script), uri, str(amplitude)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    n, power = out.stdout.split()[-2:]
    expected = (amplitude * 2 ** 15 / TX_FULL_SCALE) ** 2 + noise
    assert int(n) >= 300_000 and abs(float(power) / expected - 1) < 0.02


def test_buffers_carry_the_channels_their_mask_selects():
    """Digital loopback through the buffer path with every channel mask: a TX buffer of I and Q words (mask 0b11)
    comes back word for word; an I-only TX buffer (mask 0b01) transmits Q = 0; an RX buffer of Q only (mask 0b10)
    returns the Q words alone (int16, little-endian)."""
    from radio.servers.pluto_context import PHY, RXADC, TXDAC
    emu = PlutoEmulator(None)
    try:
        emu.values[(PHY, "debug:loopback")] = "1"
        tx, rx = emu.devices[TXDAC], emu.devices[RXADC]
        words = np.arange(-8, 8, dtype="<i2") * 1000          # I0 Q0 I1 Q1 ...
        emu.write_buffer(tx, 0b11, words.tobytes(), cyclic=False)
        assert np.array_equal(np.frombuffer(emu.read_buffer(rx, 0b11, words.nbytes), "<i2"), words)
        emu.write_buffer(tx, 0b01, words[::2].tobytes(), cyclic=False)      # I only
        both = np.frombuffer(emu.read_buffer(rx, 0b11, words.nbytes), "<i2")
        assert np.array_equal(both[::2], words[::2]) and not np.any(both[1::2])
        emu.write_buffer(tx, 0b11, words.tobytes(), cyclic=False)
        assert np.array_equal(np.frombuffer(emu.read_buffer(rx, 0b10, words.nbytes // 2), "<i2"), words[1::2])
    finally:
        emu.close()
