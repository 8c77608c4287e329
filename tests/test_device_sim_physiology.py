"""The simulated physiology: HR recoverable by a plain peak detector over a seeded grid,
realistic structure (HRV, breathing, gravity, motion artefact), determinism and speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy import signal

from device_sim import (
    Scenario,
    ScenarioError,
    Segment,
    SimulatorError,
    get_scenario,
    random_scenario,
    scenario_names,
    simulate,
)


def reference_hr(ppg: np.ndarray, fs: float) -> float:
    """Mean HR from systolic peaks: band-pass 0.5-4 Hz, scipy find_peaks (no HR prior), and,
    as usual, intervals far from the median (a beat lost in noise) left out."""
    sos = signal.butter(3, [0.5, 4.0], btype="bandpass", fs=fs, output="sos")
    x = signal.sosfiltfilt(sos, ppg)
    spread = np.percentile(x, 95) - np.percentile(x, 5)
    peaks, _ = signal.find_peaks(x, distance=max(1, int(0.27 * fs)), prominence=0.35 * spread)
    ibi = np.diff(peaks) / fs
    typical = np.median(ibi)
    return 60.0 / ibi[np.abs(ibi - typical) < 0.3 * typical].mean()


@pytest.mark.parametrize("noise", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("ppg_rate", [25.0, 64.0, 100.0])
@pytest.mark.parametrize("hr", [45, 75, 120, 170])
def test_peak_detector_recovers_scripted_hr(hr: int, ppg_rate: float, noise: float) -> None:
    for seed in (0, 1):
        rec = simulate(Scenario.constant(hr, 40), seed, ppg_rate=ppg_rate, noise=noise)
        skip = int(5 * ppg_rate)  # let the band-pass settle
        estimate = reference_hr(rec.ppg[skip:], ppg_rate)
        assert abs(estimate - hr) < 2.0, (hr, ppg_rate, noise, seed, estimate)
        # HRV is real but averages out: the per-second truth agrees with the script.
        assert abs(rec.truth.hr_bpm.mean() - hr) < 1.5


def test_shapes_units_and_odd_rates() -> None:
    rec = simulate("tachycardia", 3, ppg_rate=117.0, acc_rate=25.0)
    n = get_scenario("tachycardia").duration_s
    assert rec.duration_s == n
    assert rec.ppg.shape == (round(n * 117.0),) and rec.ppg.dtype == np.float64
    assert rec.acc.shape == (n * 25, 3) and rec.acc.dtype == np.float64
    assert (rec.ppg_rate, rec.acc_rate) == (117.0, 25.0)
    assert np.array_equal(rec.truth.t, np.arange(n))
    assert len(rec.truth.hr_bpm) == len(rec.truth.motion) == len(rec.truth.resp_rate_bpm) == n
    # At rest the accelerometer reads gravity: 1 g.
    assert np.linalg.norm(rec.acc, axis=1).mean() == pytest.approx(1.0, abs=0.03)


def test_same_seed_same_recording_other_seed_differs() -> None:
    a, b = simulate("exercise", 5), simulate("exercise", 5)
    assert np.array_equal(a.ppg, b.ppg) and np.array_equal(a.acc, b.acc)
    assert np.array_equal(a.truth.hr_bpm, b.truth.hr_bpm)
    assert not np.array_equal(a.ppg, simulate("exercise", 6).ppg)


def test_changing_only_the_rate_keeps_the_same_heart() -> None:
    slow, fast = simulate("normal", 2, ppg_rate=25.0), simulate("normal", 2, ppg_rate=100.0)
    assert np.array_equal(slow.truth.beat_times, fast.truth.beat_times)


def test_tachycardia_and_bradycardia_truth_follow_the_script() -> None:
    tachy = simulate("tachycardia", 1).truth.hr_bpm
    assert 60 <= len(tachy) <= 75
    assert abs(np.median(tachy[:12]) - 75) < 5
    assert abs(np.median(tachy[25:40]) - 145) < 5
    assert abs(np.median(tachy[-12:]) - 75) < 5
    brady = simulate("bradycardia", 1).truth.hr_bpm
    assert abs(np.median(brady[25:40]) - 38) < 3


def test_hrv_and_breathing_are_physiological() -> None:
    rec = simulate(Scenario.constant(60, 120), 4)
    rr = np.diff(rec.truth.beat_times) * 1000
    sdnn = rr.std()
    assert 15 < sdnn < 150  # ms, healthy adult at rest
    assert 9 < rec.truth.resp_rate_bpm.mean() < 22
    fast = simulate(Scenario.constant(170, 120), 4)
    assert np.diff(fast.truth.beat_times).std() * 1000 < sdnn / 2  # HRV collapses at high HR
    # RSA: the beat-rate spectrum peaks at the breathing rate.
    t = rec.truth.beat_times[1:]
    grid = np.arange(t[0], t[-1], 0.25)
    hr = np.interp(grid, t, 60000 / rr)
    f, p = signal.welch(hr - hr.mean(), fs=4.0, nperseg=256)
    resp_hz = rec.truth.resp_rate_bpm.mean() / 60
    assert abs(f[np.argmax(p)] - resp_hz) < 0.08


def test_walking_and_running_show_in_the_accelerometer_and_leak_into_the_ppg() -> None:
    cadence = 160.0  # steps/min, right on the running heart rate: the hard case
    script = Scenario.custom([Segment(60, 70), Segment(60, 150, "run", 5, cadence)])
    rec = simulate(script, 2)
    fs_a, fs_p = rec.acc_rate, rec.ppg_rate
    rest_acc, run_acc = rec.acc[: int(55 * fs_a)], rec.acc[int(65 * fs_a):]
    assert run_acc.std(axis=0).max() > 10 * rest_acc.std(axis=0).max()
    assert np.abs(run_acc).max() < 8.0  # within the +-8 g the wire format carries
    assert rec.truth.motion[:55].max() == 0 and rec.truth.motion[65:].min() == 1

    def power_at(x: np.ndarray, fs: float, f0: float) -> float:
        f, p = signal.welch(x - x.mean(), fs=fs, nperseg=int(16 * fs))
        return float(p[np.abs(f - f0) < 0.1].sum())

    def share_at(x: np.ndarray, fs: float, f0: float) -> float:
        f, p = signal.welch(x - x.mean(), fs=fs, nperseg=int(16 * fs))
        return float(p[np.abs(f - f0) < 0.1].sum() / p[(f > 0.5) & (f < 5)].sum())

    step_hz = cadence / 60
    assert share_at(np.linalg.norm(run_acc, axis=1), fs_a, step_hz) > 0.1
    run_ppg, rest_ppg = rec.ppg[int(65 * fs_p):], rec.ppg[: int(55 * fs_p)]
    # Rest at 70 bpm has no pulse harmonic at 160/min: whatever is there when running is motion.
    assert power_at(run_ppg, fs_p, step_hz) > 10 * power_at(rest_ppg, fs_p, step_hz)
    clean = simulate(script, 2, noise=0.0).ppg[int(65 * fs_p):]
    assert share_at(clean, fs_p, 150 / 60) > 0.3  # noise 0: no artefact, the pulse dominates


def test_truth_jsonl(tmp_path) -> None:
    rec = simulate("tachycardia", 0)
    path = tmp_path / "truth.jsonl"
    rec.truth.to_jsonl(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == rec.duration_s
    assert rows[0]["t"] == 0 and rows[-1]["t"] == rec.duration_s - 1
    assert {"t", "hr_bpm", "motion"} <= set(rows[20])
    assert rows[30]["hr_bpm"] == pytest.approx(rec.truth.hr_bpm[30], abs=1e-3)


def test_speed_is_far_above_real_time() -> None:
    scenario = get_scenario("exercise").with_duration(1800)
    simulate(scenario, 0)  # warm up
    start = time.perf_counter()
    rec = simulate(scenario, 1)
    factor = rec.duration_s / (time.perf_counter() - start)
    assert factor > 200, f"{factor:.0f}x real time"


def test_scenarios_and_their_errors() -> None:
    assert {"normal", "tachycardia", "bradycardia", "exercise"} <= set(scenario_names())
    with pytest.raises(ScenarioError, match="choose one of: normal, tachycardia"):
        get_scenario("tachy")
    with pytest.raises(ScenarioError, match="activity"):
        Segment(10, 70, "swim")
    with pytest.raises(ScenarioError, match="HR"):
        Segment(10, 400)
    with pytest.raises(SimulatorError, match="ppg_rate"):
        simulate("normal", ppg_rate=0)
    with pytest.raises(SimulatorError, match="noise"):
        simulate("normal", noise=-1)


def test_ramps_are_smooth_and_durations_adjustable() -> None:
    traj = get_scenario("tachycardia").trajectory()
    assert np.abs(np.diff(traj.hr_bpm)).max() < 25  # 70 bpm over a 5 s cosine ramp
    assert get_scenario("tachycardia").with_duration(30).duration_s == 30
    longer = get_scenario("tachycardia").with_duration(100)
    assert longer.duration_s == 100 and longer.trajectory().hr_bpm[-1] == 75


def test_random_scenarios_cover_the_range() -> None:
    rng = np.random.default_rng(0)
    scenarios = [random_scenario(rng, 300) for _ in range(40)]
    assert all(s.duration_s == 300 for s in scenarios)
    hrs = [seg.hr_bpm for s in scenarios for seg in s.segments]
    assert 40 <= min(hrs) < 60 and 180 < max(hrs) <= 200
    assert {seg.activity for s in scenarios for seg in s.segments} == {"rest", "walk", "run"}
    rec = simulate(scenarios[0], 0)
    assert rec.truth.hr_bpm.min() > 30 and rec.truth.hr_bpm.max() < 215


@pytest.mark.parametrize("hr", [50, 75, 120])
def test_heartpy_reads_hr_and_breathing_from_the_ppg(hr: int) -> None:
    """An independent, established PPG toolbox agrees with the truth."""
    heartpy = pytest.importorskip("heartpy")
    rec = simulate(Scenario.constant(hr, 90), 3, ppg_rate=100.0)
    x = heartpy.filter_signal(rec.ppg, [0.5, 4.0], rec.ppg_rate, order=3, filtertype="bandpass")
    _, measures = heartpy.process(x, rec.ppg_rate, bpmmax=220)
    assert abs(measures["bpm"] - rec.truth.hr_bpm.mean()) < 2
    assert abs(measures["breathingrate"] * 60 - rec.truth.resp_rate_bpm.mean()) < 4
