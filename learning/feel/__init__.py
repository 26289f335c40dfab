"""Federated edge learning over the air (Amiri & Gündüz, IEEE TSP 2020 and TWC 2020): A-DSGD, D-DSGD, error-free
and uncoded analog aggregation over a sum channel, with typed device-side and server-side steps.

Modules: data (offline data sets), partition (IID / two-class / Dirichlet splits), models (flat-parameter models,
per-device gradients in one vmap), amp (AMP sparse recovery), channel (the SumChannel protocol and the symbol-level
channel), schemes (encoders/decoders), messages (typed round messages), device, server, runner (experiment loop).
"""
