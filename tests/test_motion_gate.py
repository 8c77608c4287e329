"""The motion artefact gate: jumps under motion are flagged, rest and gradual change are not."""

from edge.estimate import MotionArtefactGate

WALKING, STILL = 0.15, 0.01


def feed(gate, values, motion):
    return [gate.accepts(v, motion) for v in values]


def test_isolated_spikes_while_walking_are_flagged():
    gate = MotionArtefactGate()
    got = feed(gate, [95, 96, 94, 95, 165, 96, 95, 192, 134, 94, 95], WALKING)
    assert got == [True, True, True, True, False, True, True, False, False, True, True]


def test_a_sudden_jump_at_rest_is_accepted():
    gate = MotionArtefactGate()
    assert all(feed(gate, [75, 76, 75, 120, 141, 145, 146], STILL))


def test_a_gradual_rise_while_running_is_accepted():
    gate = MotionArtefactGate()
    assert all(feed(gate, range(100, 170, 6), WALKING))


def test_no_accelerometer_means_no_gating():
    gate = MotionArtefactGate()
    assert all(feed(gate, [70, 70, 70, 150, 70], None))


def test_three_agreeing_readings_establish_a_new_level():
    gate = MotionArtefactGate()
    got = feed(gate, [95, 95, 95, 140, 142, 141, 143], WALKING)
    assert got == [True, True, True, False, False, True, True]
