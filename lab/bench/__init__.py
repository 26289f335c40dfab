"""Benchmarks as commands: ``otalab bench NAME`` runs ``lab.bench.NAME.main(argv)``, which prints one JSON record.

Every benchmark ends with :func:`report`, so every record carries the command line, git revision and time, goes to
stdout, and is written atomically to ``--json PATH`` when asked (``-``: stdout only).
"""

from __future__ import annotations


def report(record: dict, json_path=None) -> dict:
    """Print ``record`` (plus :func:`lab.results.metadata` where it lacks it) as JSON on stdout, write it to
    ``json_path`` atomically unless that is None or ``-``, and return it."""
    import json

    from lab.results import metadata, to_jsonable, write_json

    record = {**metadata(), **record}
    print(json.dumps(to_jsonable(record), indent=1, allow_nan=False), flush=True)
    if json_path is not None and str(json_path) != "-":
        write_json(json_path, record)
    return record
