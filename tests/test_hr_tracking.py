"""Heart rate through the runtime's HeartRateRunner with the shipped bundle: clean pulses from
smooth to sharp (harmonics stronger than the fundamental) read right over 40-200 bpm; the
belief tracking publishes the mode, never the mean of a split belief, with a credible
interval that decides "uncertain"; a reboot or a long gap restarts the belief."""

from pathlib import Path

import numpy as np
import pytest

from edge.estimate import GOOD, UNCERTAIN, HeartRateRunner
from edge.infer import load_model
from wire import Channel, Flag, Frame

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "hr.json"
RATE = 64.0

# (name, systolic width s, dicrotic amplitude, dicrotic delay s): smooth wrist pulse to a sharp
# finger-clip pulse whose dicrotic wave takes power from the fundamental.
SHAPES = [("smooth", 0.15, 0.0, 0.0), ("notched", 0.08, 0.5, 0.3), ("sharp", 0.035, 0.5, 0.3)]


@pytest.fixture(scope="module")
def model():
    return load_model(BUNDLE)


def pulses(bpm: float, width: float, dicrotic: float, delay: float, seconds: float = 40.0,
           rate: float = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    period = 60.0 / bpm
    x = np.zeros_like(t)
    for b in np.arange(-1, seconds / period + 1) * period:
        x += np.exp(-0.5 * ((t - b - 0.15) / width) ** 2)
        if dicrotic:
            x += dicrotic * np.exp(-0.5 * ((t - b - 0.15 - delay) / (0.6 * width + 0.02)) ** 2)
    return 20000 + 500 * x


def frames(x: np.ndarray, channel: Channel, rate: float, t0_us: int = 0, seq0: int = 0,
           boot: bool = False):
    block = int(rate // 2)
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    for k, i in enumerate(range(0, len(x), block)):
        yield Frame(1, seq0 + k, t0_us + round(i * 1e6 / rate), channel, rate, x[i:i + block],
                    flags=Flag.BOOT if boot and k == 0 else Flag.NONE)


def run(runner: HeartRateRunner, ppg: np.ndarray, **kw) -> list:
    rest = np.tile([0.0, 0.0, 1.0], (len(ppg), 1)) + np.random.default_rng(0).normal(
        0, 0.002, (len(ppg), 3))
    out = []
    for fp, fa in zip(frames(ppg, Channel.PPG, RATE, **kw), frames(rest, Channel.ACCEL, RATE,
                                                                   **kw), strict=True):
        out += runner.add(fp)
        out += runner.add(fa)
    return out


def strongest_bpm(x: np.ndarray) -> float:
    """The strongest component of the pulse train in the model's 0.5-3.6 Hz band, bpm."""
    spec = np.abs(np.fft.rfft(x - x.mean()))
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    band = (f >= 0.5) & (f <= 3.6)
    return 60 * float(f[band][spec[band].argmax()])


# hr 2.1.1 reads all 30 (2.0.0 and 2.1.0 missed two each: docs/models.md, Limits).
GRID = [pytest.param(shape, bpm, id=f"{shape[0]}-{bpm}")
        for shape in SHAPES for bpm in (40, 50, 60, 75, 90, 110, 130, 150, 175, 200)]


@pytest.mark.parametrize(("shape", "bpm"), GRID)
def test_clean_pulses_smooth_to_sharp_read_within_3_bpm(model, bpm, shape):
    _, width, dicrotic, delay = shape
    ppg = pulses(bpm, width, dicrotic, delay)
    if shape[0] == "sharp" and 60 <= bpm <= 90:  # the case that fooled the 1.x model:
        assert strongest_bpm(ppg) > 1.9 * bpm  # a harmonic outweighs the fundamental
    estimates = run(HeartRateRunner("d", model), ppg)
    assert len(estimates) >= 10
    settled = estimates[3:]  # the belief starts flat: a few windows to settle
    values = np.array([e.value for e in settled])
    assert np.abs(values - bpm).max() <= 3.0, values
    # The belief narrows as windows agree: from 20 s on, a clean pulse is "good".
    assert all(e.quality == GOOD for e in settled[-5:]), [e.quality for e in settled]
    for e in settled:
        assert e.details["hr_ci_low"] <= e.value <= e.details["hr_ci_high"]


def test_wander_at_a_third_of_the_heart_rate_is_not_taken_for_the_heart(model):
    # A 45 bpm wander repeats at 3 beats of a 135 bpm heart, as a 45 bpm pulse's fundamental
    # would; the harmonic check moves a mode to mode / 3 only when the spectrum also shows the
    # pulse's 2nd harmonic (90 bpm), which a sinusoid does not have.
    ppg = pulses(135, 0.15, 0.0, 0.0)
    ppg += 150 * np.sin(2 * np.pi * 0.75 * np.arange(len(ppg)) / RATE)
    values = np.array([e.value for e in run(HeartRateRunner("d", model), ppg)[3:]])
    assert np.abs(values - 135).max() <= 3.0, values


def test_a_split_belief_publishes_its_mode_not_the_mean_and_is_uncertain(model):
    runner = HeartRateRunner("d", model)
    bins = runner.bins
    p = np.exp(-0.5 * ((bins - 79) / 3) ** 2) * 0.55 + np.exp(-0.5 * ((bins - 155) / 3) ** 2) * 0.45
    p /= p.sum()
    (e,) = runner.interpret(p, GOOD, 0.0, 8.0)
    assert abs(e.value - 79) <= 2  # the mean would be ~113
    assert e.quality == UNCERTAIN
    assert e.details["hr_ci_low"] < 85 and e.details["hr_ci_high"] > 150


def test_the_belief_carries_over_windows_and_restarts_after_a_reboot_or_gap(model):
    runner = HeartRateRunner("d", model)
    bins = runner.bins

    def peak(at, width=3.0):
        p = np.exp(-0.5 * ((bins - at) / width) ** 2) + 1e-4
        return p / p.sum()

    for k in range(10):
        (e,) = runner.interpret(peak(70), GOOD, 0.0, 8.0 + 2 * k)
    assert abs(e.value - 70) <= 2 and e.quality == GOOD
    # One window that sees 140 does not move a settled belief ...
    (e,) = runner.interpret(peak(140), GOOD, 0.0, 28.0)
    assert abs(e.value - 70) <= 2
    # ... but after a reboot (device time starts again) that window decides alone.
    (e,) = runner.interpret(peak(140), GOOD, 0.0, 8.0)
    assert abs(e.value - 140) <= 2
    for k in range(5):
        runner.interpret(peak(70), GOOD, 0.0, 10.0 + 2 * k)
    (e,) = runner.interpret(peak(140), GOOD, 0.0, 10.0 + 2 * 4 + HeartRateRunner.RESET_GAP_S
                            + 1)  # a long gap: restart
    assert abs(e.value - 140) <= 2


# A sudden tachycardia must alarm within ~10 s: the belief follows a sustained jump. Running,
# the price of the 2nd-harmonic rule below: a real doubling (nothing left at the old rate) is
# followed after 7 windows instead of 2.
@pytest.mark.parametrize("motion_g, jump_bpm, windows", [(0.0, 150, 4), (1.0, 160, 8)],
                         ids=["still", "running-doubling"])
def test_a_real_new_rate_takes_over_within_a_few_windows(model, motion_g, jump_bpm, windows):
    runner = HeartRateRunner("d", model)
    bins = runner.bins
    settle = np.exp(-0.5 * ((bins - 80) / 3) ** 2)
    jump = np.exp(-0.5 * ((bins - jump_bpm) / 3) ** 2) + 1e-3
    for k in range(10):
        runner.interpret(settle / settle.sum(), GOOD, motion_g, 8.0 + 2 * k)
    values = [runner.interpret(jump / jump.sum(), GOOD, motion_g, 28.0 + 2 * k)[0].value
              for k in range(windows)]
    assert abs(values[-1] - jump_bpm) <= 2, values


def test_reboot_flag_through_frames_restarts_the_belief(model):
    runner = HeartRateRunner("d", model)
    first = run(runner, pulses(60, 0.1, 0.0, 0.0, seconds=30))
    second = run(runner, pulses(150, 0.1, 0.0, 0.0, seconds=16), boot=True, seq0=1000)
    assert abs(first[-1].value - 60) <= 3
    assert second and abs(second[0].value - 150) <= 3  # not dragged from 60 by the old belief


def test_under_motion_windows_at_the_2nd_harmonic_do_not_carry_the_belief_there(model):
    # Running, the model reads most windows at the heart's 2nd harmonic and some at the heart
    # (normal-day seed 1 with 1-h noise blocks: 75-90 bpm read 158-176 and `good` for 40 s).
    runner = HeartRateRunner("d", model)
    bins = runner.bins

    def peak(at, height=1.0, width=3.0):
        p = height * np.exp(-0.5 * ((bins - at) / width) ** 2) + 1e-3
        return p / p.sum()

    for k in range(10):
        runner.interpret(peak(75), GOOD, 1.0, 8.0 + 2 * k)
    values = []
    for k in range(24):
        heart = 75 + 0.5 * k  # rising at the exercise onset
        p = peak(heart, width=6.0) if k % 4 == 3 else peak(2 * heart)
        values.append(runner.interpret(p, GOOD, 1.0, 28.0 + 2 * k)[0].value - heart)
    assert np.abs(values).max() <= 5.0, np.round(values)


def test_an_exercise_onset_is_not_read_at_twice_the_heart_rate(model, monkeypatch):
    # normal-day seed 1 as device_sim drew it with noise blocks of 1 h: hr 2.0.0 and 2.1.0
    # read the running onset at ~27000 s at the 2nd harmonic (158-176 bpm, 'good': a false
    # hr_high) while the heart went from 72 to 90.
    from device_sim import physiology, simulation

    monkeypatch.setattr(physiology, "NOISE_BLOCK_S", 3600.0)
    monkeypatch.setattr(physiology, "_BLOCK", round(3600.0 * physiology.CONTROL_RATE))
    sim = simulation("normal-day", 1)
    runner = HeartRateRunner("d", model)
    start, stop = 26_520, 27_240
    estimates = []
    for chunk in sim.chunks(120):
        if chunk.end_s <= start:
            continue
        if chunk.start_s >= stop:
            break
        at = {"t0_us": chunk.start_s * 1_000_000, "seq0": chunk.start_s * 2}
        for fp, fa in zip(frames(chunk.ppg, Channel.PPG, sim.ppg_rate, **at),
                          frames(chunk.acc, Channel.ACCEL, sim.acc_rate, **at), strict=True):
            estimates += runner.add(fp) + runner.add(fa)
    assert len(estimates) > 300
    hr = sim.truth.hr_bpm
    truth = np.array([hr[int(e.device_time_s) - 8:int(e.device_time_s)].mean()
                      for e in estimates])
    values = np.array([e.value for e in estimates])
    doubled = [(e.device_time_s, round(e.value), e.quality) for e, t in zip(
        estimates, truth, strict=True) if e.value > 1.5 * t]
    # No harmonic drives an alarm; where the belief is split the value stays at the heart.
    assert not [d for d in doubled if d[2] == GOOD], doubled
    onset = (truth > 70) & (truth < 95) & (np.array([e.device_time_s for e in estimates])
                                           >= 27_000)
    assert np.median(np.abs(values - truth)[onset]) < 5.0, doubled


def test_the_mode_is_the_heaviest_neighbourhood_not_one_of_two_tied_outer_bins(model):
    # hr 2.1.1 can alternate between bins: a 65.6 bpm pulse read as 0.24 / 0.19 / 0.24 at
    # 63.8 / 65.6 / 67.5; an int8 tie of the outer two must not move the rate by two bins.
    runner = HeartRateRunner("d", model)
    bins = runner.bins
    i = int(np.argmin(np.abs(bins - 65.6)))
    belief = np.full(len(bins), 1e-4)
    belief[i - 2:i + 3] = [0.12, 0.24, 0.19, 0.24, 0.12]
    value, low, high = runner.summary(belief / belief.sum())
    assert abs(value - bins[i]) < 0.5 and low <= value <= high
