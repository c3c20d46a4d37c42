"""The front's rules on known numbers (lora_lab/report/aggregate.py: non_dominated, knee)."""

from __future__ import annotations

from lora_lab.report.aggregate import knee, non_dominated


def test_non_dominated_keeps_every_point_nothing_beats_on_all_objectives():
    # (accuracy up, latency down, bytes down)
    points = [(0.90, 10.0, 900), (0.89, 2.0, 300), (0.70, 1.0, 10), (0.85, 3.0, 400), (0.90, 12.0, 900)]
    assert non_dominated(points, (True, False, False)) == [0, 1, 2]  # 3 loses to 1 everywhere, 4 to 0
    assert non_dominated([(1.0, 1.0), (1.0, 1.0)], (True, True)) == [0, 1]  # equal points dominate neither


def test_the_knee_gives_up_least_on_every_objective_at_once():
    front = [(0.90, 10.0), (0.89, 2.0), (0.70, 1.0)]
    # scaled to [0, 1] over the front: (0, 1), (0.05, 0.11), (1, 0): the middle one is nearest the ideal
    assert knee(front, (True, False)) == 1
    assert knee([(0.5, 3.0)], (True, False)) == 0 and knee([], (True,)) is None
