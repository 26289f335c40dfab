"""Radios and the simulated air.

Light re-exports only (no zmq/uhd/adi/torch/phy imports here): the Radio interface, the channel model, the in-process
air and the loopback radio. Device drivers live in their own modules (``radio.drivers.zmq``, ``radio.drivers.pluto``, ``radio.drivers.usrp``).
"""

from radio.sim.air import Air, AirConfig
from radio.base import LateError, Radio, RadioCapabilities, RadioError, as_samples
from radio.sim.channel import LinkChannel, LinkParams
from radio.drivers.loopback import LoopbackArgs, LoopbackRadio, loopback_pair

__all__ = ["Air", "AirConfig", "LateError", "LinkChannel", "LinkParams", "LoopbackArgs", "LoopbackRadio", "Radio",
           "RadioCapabilities", "RadioError", "as_samples", "loopback_pair"]
