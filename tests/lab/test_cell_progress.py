"""A cell run that stops before the PS writes its result keeps the rounds the PS had finished."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("flwr")

from lab.experiments.cell import CellOptions, _fold_progress  # noqa: E402
from lab.flower.server_app import progress_path, save_progress  # noqa: E402


def test_rounds_done_before_a_timeout_are_kept_and_marked_partial(tmp_path):
    out = tmp_path / "ps_result.json"
    rounds = [{"round": 1, "devices": 2, "control_plane_s": 3.0, "accuracy": 0.4},
              {"round": 2, "devices": 2, "control_plane_s": 5.0, "accuracy": 0.5}]
    save_progress({"out": str(out)}, {"task": "feel", "rounds": rounds, "final_accuracy": 0.5, "wall_s": 16.0,
                                      "excluded_devices": []})
    assert progress_path(out).exists() and not out.exists()
    record = {"error": "the run did not finish within 900 s"}
    _fold_progress(record, out, CellOptions(config=None, task="feel"))
    assert record["partial"] is True and record["error"].startswith("the run did not finish")
    assert [r["round"] for r in record["rounds"]] == [1, 2] and record["final_accuracy"] == 0.5
    assert record["overhead_fraction"]["control_plane_s_per_round"] == pytest.approx(4.0)


def test_a_finished_result_is_not_overwritten_by_the_progress_file(tmp_path):
    out = tmp_path / "ps_result.json"
    save_progress({"out": str(out)}, {"rounds": [{"round": 1, "control_plane_s": 1.0}]})
    out.write_text(json.dumps({"rounds": []}))
    record = {"error": "interrupted"}
    _fold_progress(record, out, CellOptions(config=None))
    assert "partial" not in record and "rounds" not in record
    save_progress({}, {"rounds": []})       # no out: nothing written, no error
