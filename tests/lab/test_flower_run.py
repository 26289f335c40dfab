"""When the launcher decides that a run's Flower ServerApp has exited (lab.experiments.flower_run.serverapp_gone)."""

from __future__ import annotations

from lab.experiments.flower_run import serverapp_gone


def test_a_short_lived_fork_of_the_serverapp_is_not_its_exit():
    # 101: the ServerApp, alive; 102: a helper it forked, seen before its exec (same command line), gone
    assert serverapp_gone([101, 102], set(), lambda p: p == 101) is None


def test_the_serverapp_is_gone_when_none_of_its_processes_is_alive():
    assert serverapp_gone([101, 102], set(), lambda p: False) == 101


def test_serverapps_of_earlier_runs_do_not_count():
    assert serverapp_gone([7, 101], {7}, lambda p: p == 101) is None
    assert serverapp_gone([7], {7}, lambda p: False) is None
