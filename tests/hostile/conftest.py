"""Shared pieces of the hostile-input suite: a pickle whose unpickling would create a marker file, and the CLI runner
that checks exit code 2, the message and the absence of tracebacks."""

from __future__ import annotations

import builtins
import pickle

import pytest


class MarkerPayload:
    """Unpickling this calls ``open(marker, "w")``: if the marker file exists afterwards, code ran from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def evil_pickle_bytes(marker) -> bytes:
    return pickle.dumps({"format": "otalab-jscc/1", "x": MarkerPayload(marker)})


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "CODE_RAN"
    yield path
    assert not path.exists(), "a crafted file ran code"


@pytest.fixture
def cli(capsys):
    """``cli(argv, *must_contain)``: run ``lab.cli.main(argv)``, expect rc 2, every string in stderr, no traceback."""
    from lab.cli import main

    def run(argv, *must_contain, rc=2):
        got = main([str(a) for a in argv])
        out = capsys.readouterr()
        text = out.err + out.out
        assert got == rc, f"rc {got} for {argv}:\n{text}"
        assert "Traceback" not in text
        flat = " ".join(text.split())
        for s in must_contain:
            assert " ".join(str(s).split()) in flat, f"{s!r} not in:\n{text}"
        return text
    return run
