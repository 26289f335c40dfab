"""The cell's control plane on Flower's deployment runtime: the ServerApp is the PS, the ClientApp a device.

- :mod:`lab.flower.protocol` — message types, record keys and the round instruction/answer as plain dicts;
- :mod:`lab.flower.server_app` — ``app``: the PS (a :class:`radio.node.server.NodeClient` to the PS's radio node);
- :mod:`lab.flower.client_app` — ``app``: a device (its SuperNode's ``--node-config`` names its radio node and name);
- ``lab/flower/app/pyproject.toml`` — the Flower App that names them (``flwr run lab/flower/app ...``);
- :mod:`lab.flower.stragglers_server`, :mod:`lab.flower.stragglers_client`, ``lab/flower/stragglers_app`` — the
  master and the workers of coded distributed GD (``otalab stragglers --runtime flower``, docs/stragglers.md).

Radio handles stay in the radio nodes (``otalab node``); ClientApps are short-lived (Flower starts one process per
message) and only talk to their node's local API. Over-the-air updates never travel over Flower.
"""
