"""The device's ClientApp: answers the PS's instructions using only its own radio node.

The SuperNode serving a device is started with ``--node-config "device='dev0' node-endpoint='tcp://127.0.0.1:PORT'"``
(the device's name and its radio node's local API, see ``otalab node``). Flower starts one ClientApp process per
message, so nothing here holds a radio: each handler connects a :class:`radio.node.server.NodeClient` to the node,
does its part, and answers.
"""

from __future__ import annotations

import os
import time

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from lab.flower import protocol

app = ClientApp()


def node_config(context: Context) -> tuple[str, str]:
    """(device name, node endpoint) from the SuperNode's ``--node-config``; ValueError naming a missing key."""
    cfg = context.node_config
    for key in ("device", "node-endpoint"):
        if key not in cfg or not str(cfg[key]):
            raise ValueError(f"SuperNode --node-config: {key!r} missing (expected \"device='dev0' "
                             f"node-endpoint='tcp://127.0.0.1:PORT'\"), got {dict(cfg)!r}")
    return str(cfg["device"]), str(cfg["node-endpoint"])


def probe(instruction: dict, device: str, endpoint: str) -> dict:
    """The probe round on the device side: read the node's clock and counters; how far ahead the slot still is."""
    from radio.base import RadioError
    from radio.node.server import NodeClient

    t0 = time.monotonic()
    answer = {"device": device, "pid": os.getpid(), "round": instruction.get("round"),
              "received_wall": time.time()}
    try:
        client = NodeClient(endpoint, timeout_s=5.0)
    except (RadioError, OSError) as exc:      # the node is gone: say so, the PS excludes this device
        answer["error"] = f"radio node of {device} at {endpoint}: {exc}"
        return answer
    try:
        now = client.time_now()
        st = client.status()
    except (RadioError, OSError, KeyError) as exc:
        answer["error"] = f"radio node of {device} at {endpoint}: {exc}"
        return answer
    finally:
        client.close()
    answer.update(node_now=now, slot_margin_samples=int(instruction["slot"]) - now,
                  sample_rate=st["sample_rate"], gaps=st["gaps"], tx_late=st["tx_late"],
                  tx_underflow=st["tx_underflow"], tx_rejected=st["tx_rejected"],
                  clock_residual_us=st["clock_map"]["residual_us"], handled_s=time.monotonic() - t0)
    return answer


@app.query("probe")
def _probe(message: Message, context: Context) -> Message:
    device, endpoint = node_config(context)
    return Message(protocol.pack(probe(protocol.unpack(message), device, endpoint)), reply_to=message)


def actor(body: dict, device: str, endpoint: str, values_fn=None) -> dict:
    """One phase on the device side: forward ``body``'s steps to the device actor hosted in this device's radio node
    (``otalab node --actor device``), with the values of a data step as the payload
    (:func:`lab.experiments.cell_run.device_step`); the node's error, or its absence, comes back as ``error``."""
    from lab.experiments.cell_run import device_step
    from radio.base import RadioError
    from radio.node.server import NodeClient

    t0 = time.monotonic()
    try:
        client = NodeClient(endpoint, timeout_s=10.0)
    except (RadioError, OSError) as exc:      # the node is gone: say so, the PS excludes this device
        return {"device": device, "pid": os.getpid(), "error": f"radio node of {device} at {endpoint}: {exc}"}
    try:
        answer = device_step(body, lambda fields, payload: client.call("actor", fields, payload, wait_s=120.0)[0]
                             ["body"], values_fn)
    except (RadioError, OSError, KeyError) as exc:
        answer = {"error": f"radio node of {device} at {endpoint}: {exc}"}
    finally:
        client.close()
    answer.update(device=device, pid=os.getpid(), handled_s=time.monotonic() - t0)
    return answer


@app.query("actor")
def _actor(message: Message, context: Context) -> Message:
    device, endpoint = node_config(context)
    body = protocol.unpack(message)
    feel = body.pop("feel", None)     # this phase carries the global model: the data step's values are the update
    kept = context.state[protocol.KEY]["error"] if feel and protocol.KEY in context.state else None
    learner = None

    def update(step: dict):
        # made while the node already sends the pilots (device_step): imports, data and local training included
        nonlocal learner
        from lab.experiments.cell_feel import DeviceLearner

        learner = DeviceLearner(feel, kept or None)
        return learner.values(step)

    answer = actor(body, device, endpoint, update if feel else None)
    if learner is not None:
        from flwr.app import ConfigRecord

        if not answer.get("error"):
            context.state[protocol.KEY] = ConfigRecord({"error": learner.commit(answer)})
        answer["learner"] = {"loss": learner.loss, "error_norm_in": learner.error_norm_in}
    return Message(protocol.pack(answer), reply_to=message)
