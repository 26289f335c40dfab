"""Differential privacy of federated edge learning: the per-round Gaussian mechanisms of A-DSGD / D-DSGD and their
composition over rounds with a maintained accountant (Google's ``dp-accounting``)."""
