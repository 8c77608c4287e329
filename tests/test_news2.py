"""NEWS2 bands at their edges (RCP 2017 chart)."""

import pytest

from edge.news2 import news2_score


@pytest.mark.parametrize(("pulse", "score"), [
    (30, 3), (40, 3), (40.4, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1),
    (111, 2), (130, 2), (131, 3), (200, 3)])
def test_pulse_bands(pulse, score):
    assert news2_score("heart_rate", pulse) == score


@pytest.mark.parametrize(("sbp", "score"), [
    (80, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)])
def test_systolic_bands(sbp, score):
    assert news2_score("systolic_bp", sbp) == score


def test_unscored_vital():
    assert news2_score("glucose", 100) is None
