"""Distributed binary hypothesis testing over a noisy channel (see docs/ht.md)."""
