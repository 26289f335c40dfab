"""The OFDM receiver's stages, one per module (:class:`phy.receiver.Receiver` chains them over a stream):

=====================================  ======================================================================
:mod:`phy.rx.detection`                the scan for candidates (Schmidl–Cox metric, cached, looked ahead)
:mod:`phy.rx.acquisition`              fine timing, integer and fine CFO, LTS verification
:mod:`phy.rx.ofdm_demodulation`        FFT windows of LTS, header and payload symbols, CFO rotation
:mod:`phy.rx.channel_estimation`       LS + significant-tap channel estimate, noise variance, SNR
:mod:`phy.rx.header`                   soft-ML Golay header decoding, CRC-16
:mod:`phy.rx.phase_tracking`           pilot phase model, decision-directed refinement, phase-error variance
:mod:`phy.rx.equalization`             MMSE / ZF, effective noise, post-equalization SNR
:mod:`phy.rx.demapping`                LLRs, FEC decoding, analog values; :class:`RxFrame`, :func:`decode_frames`
=====================================  ======================================================================

Every stage works on a batch of F frames at once (leading axis F) and states its array shapes.
"""
