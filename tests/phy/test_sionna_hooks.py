"""The private sionna hooks that phy/fec.py's early-stopping LDPC decoder relies on.

``phy.fec._early_stop_decoder_class`` subclasses sionna's ``LDPCBPDecoder`` and re-implements its ``call`` loop with
sionna's internal BP step and index tables. These are not public API: a sionna release that renames or removes one
must fail here, naming the hook, instead of failing deep inside a decode (or silently running the full iterations).
pyproject.toml pins ``sionna-no-rt>=2.0,<3`` (1.x is the TensorFlow sionna; 2.x is PyTorch).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

#: instance attributes read by _EarlyStopBP.call (phy/fec.py)
DECODER_ATTRIBUTES = ("_return_state", "_v2c_callbacks", "_c2v_callbacks", "_scheduling", "_num_iter", "_llr_max",
                      "_num_vns", "_num_cns", "_vn_idx", "_cn_idx", "_vn_idx_t", "_hard_out", "dtype")


def _decoder():
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    encoder = LDPC5GEncoder(64, 128)
    return LDPC5GDecoder(encoder, num_iter=4, hard_out=True, return_infobits=True)


def test_sionna_is_the_pytorch_major_version() -> None:
    import sionna.phy

    version = getattr(sionna.phy, "__version__", None) or __import__("importlib.metadata").metadata.version(
        "sionna-no-rt")
    major = int(str(version).split(".")[0])
    assert major == 2, (f"sionna-no-rt {version} installed; phy/fec.py needs the PyTorch sionna 2.x "
                        f"(pyproject pins >=2.0,<3)")


def test_bp_decoder_has_the_private_hooks_the_early_stop_subclass_uses() -> None:
    from sionna.phy.fec.ldpc.decoding import LDPCBPDecoder

    decoder = _decoder()
    missing = [name for name in DECODER_ATTRIBUTES if not hasattr(decoder, name)]
    assert not missing, (f"sionna's LDPC5GDecoder lacks {missing}: phy/fec.py's _EarlyStopBP.call reads them; "
                         f"adapt it to this sionna or pin the version that has them")
    assert callable(getattr(LDPCBPDecoder, "_bp_iter", None)), \
        "sionna's LDPCBPDecoder._bp_iter is gone: phy/fec.py's early-stop loop calls it once per iteration"
    params = list(inspect.signature(LDPCBPDecoder._bp_iter).parameters)
    assert params[:6] == ["self", "msg_v2c", "msg_c2v", "llr_ch", "x_hat", "it"], (
        f"LDPCBPDecoder._bp_iter{params} changed: phy/fec.py calls _bp_iter(msg_v2c, msg_c2v, llr, x_hat, it)")
    call = inspect.signature(LDPCBPDecoder.call).parameters
    assert {"llr_ch", "num_iter", "msg_v2c"} <= set(call), (
        f"LDPCBPDecoder.call{list(call)} changed: _EarlyStopBP.call overrides call(llr_ch, *, num_iter, msg_v2c)")
    assert np.asarray(decoder._vn_idx).shape == np.asarray(decoder._cn_idx).shape, \
        "sionna's _vn_idx/_cn_idx are no longer one (variable node, check node) pair per edge"


def test_the_early_stop_loop_is_the_one_that_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """LDPC5GDecoder must still reach LDPCBPDecoder.call through super() (the MRO the subclass is built on), and the
    loop must stop after one BP iteration on a noiseless codeword (a valid codeword satisfies every check)."""
    from sionna.phy.fec.ldpc.decoding import LDPCBPDecoder

    from phy.fec import LdpcCode, _early_stop_decoder_class

    cls = _early_stop_decoder_class()
    bp_calls = []
    original = LDPCBPDecoder._bp_iter

    def counting_bp_iter(self, *args, **kwargs):
        bp_calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "_bp_iter", counting_bp_iter)
    code = LdpcCode(64, 128, iterations=20)
    bits = np.random.default_rng(0).integers(0, 2, (3, 64)).astype(np.uint8)
    cw = code.encode(bits)
    llr = (1.0 - 2.0 * cw.astype(np.float32)) * 10.0     # LLR log P(0)/P(1): strong and correct
    np.testing.assert_array_equal(code.decode(llr), bits)
    assert len(bp_calls) == 1, f"early stop ran {len(bp_calls)} BP iterations on noiseless codewords, expected 1"
