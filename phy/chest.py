"""Former home of the channel estimator: :class:`SignificantTapEstimator` and :func:`ml_delay` now live in
:mod:`phy.rx.channel_estimation` (one estimator for the receiver and sync); this module keeps the names working."""

from phy.rx.channel_estimation import SignificantTapEstimator, ml_delay

__all__ = ["SignificantTapEstimator", "ml_delay"]
