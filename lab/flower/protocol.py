"""What the PS (ServerApp) and the devices (ClientApps) say to each other over Flower, in one place.

Every message carries one JSON object in ``RecordDict({"otalab": ConfigRecord({"json": ...})})``: small control
data only (round index, the slot in PS sample time, the A-DSGD projection seed, the power scale; stats back).
Over-the-air model updates never travel here.

=============  ==============================================  ==================================================
message type   PS -> device                                    device -> PS
=============  ==============================================  ==================================================
query.probe    round, slot (PS samples), seed, power_scale,    device, pid, node_now, slot_margin_samples,
               sent_wall (PS host time.time())                 node status counters, handled_s, error
query.actor    {"do": [steps], "diagnostics": bool}: one phase's   the device actor's reply (state, step results,
               orchestration messages for the device actor in  error), device, pid; diagnostics mode: also the
               its radio node (steps: lab.experiments.         values it sent (base64 complex64; for the NMSE)
               actor_host); feel: + the global model
               (base64 float32) and the round's A-DSGD seed
=============  ==============================================  ==================================================

``slot_margin_samples``: how far ahead of the device's radio clock the slot still was when the device had the
instruction (on one shared air the clocks are the same clock; with radios of their own it is in device samples,
offset by the unknown clock offset the sync task estimates).
"""

from __future__ import annotations

import json

PROBE = "query.probe"
ACTOR = "query.actor"
KEY = "otalab"


def pack(body: dict):
    """``body`` (JSON-able dict) as a Flower RecordDict."""
    from flwr.app import ConfigRecord, RecordDict

    return RecordDict({KEY: ConfigRecord({"json": json.dumps(body, allow_nan=True)})})


def unpack(message) -> dict:
    """The JSON object a Flower Message carries (ValueError naming what is missing)."""
    content = message.content
    if KEY not in content or "json" not in content[KEY]:
        raise ValueError(f"message {message.metadata.message_type!r}: no {KEY!r} record (expected an otalab "
                         f"control message)")
    return json.loads(content[KEY]["json"])
