"""ECG, blood pressure, AF and glucose/CGM: physiology that a detector can check, on the wire."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from scipy import signal

from device_sim import Scenario, Segment, get_scenario, simulate, stream
from device_sim.glucose import CGM_PERIOD_S
from device_sim.physiology import _reflection
from device_sim.stream import frames
from wire.protocol import Channel, Decoder, SampleType

ALL = ("ppg", "acc", "ecg", "bp", "cgm")


def test_extra_channels_leave_ppg_and_acc_untouched() -> None:
    plain = simulate("tachycardia", 4)
    full = simulate("tachycardia", 4, channels=ALL)
    assert np.array_equal(plain.ppg, full.ppg) and np.array_equal(plain.acc, full.acc)
    assert plain.ecg is None and full.ecg is not None


def test_ecg_r_peaks_are_the_beats() -> None:
    rec = simulate(Scenario.constant(75, 30), 1, channels=("ecg",), noise=0.5)
    fs = rec.ecg_rate
    peaks, _ = signal.find_peaks(rec.ecg, height=0.5, distance=int(0.3 * fs))
    beats = rec.truth.beat_times
    beats = beats[(beats > 0.5) & (beats < 29.5)]
    nearest = np.abs(peaks[:, None] / fs - beats[None, :]).min(axis=0)
    assert np.all(nearest < 2.0 / fs)
    assert len(peaks) == pytest.approx(len(beats), abs=2)


def pulse_arrival_ms(dbp: float, offset_ms: float = 0.0) -> float:
    """Median R-peak -> PPG maximum-upstroke delay, at 500 Hz with no noise."""
    scen = Scenario.custom([Segment(40, 70, sbp_mmhg=dbp + 45, dbp_mmhg=dbp)])
    scen = dataclasses.replace(scen, pat_offset_ms=offset_ms)
    rec = simulate(scen, 3, ppg_rate=500.0, noise=0.0)
    slope = np.gradient(rec.ppg)
    delays = []
    for beat in rec.truth.beat_times[2:-2]:
        i = int(beat * 500)
        delays.append(np.argmax(slope[i:i + 250]) / 500.0)
    return 1000 * float(np.median(delays))


def test_pulse_arrival_shortens_as_pressure_rises() -> None:
    low, ref, high = pulse_arrival_ms(55), pulse_arrival_ms(80), pulse_arrival_ms(115)
    assert low > ref > high
    # Moens-Korteweg with the documented constants: about 1 ms per mmHg around 80 mmHg.
    assert 20 < low - ref < 40 and 25 < ref - high < 50
    # The subject's own offset (what a cuff reading calibrates) shifts it as a whole.
    assert pulse_arrival_ms(80, offset_ms=30) - ref == pytest.approx(30, abs=3)


def test_truth_pat_follows_pressure() -> None:
    rec = simulate("hypertensive-crisis", 2)
    assert rec.truth.pat_ms[:100].mean() - rec.truth.pat_ms[-100:].mean() > 30


def pulse_shape(sbp: float, dbp: float) -> tuple[float, float, float]:
    """Clean 60 bpm PPG at 500 Hz: median (systolic peak -> diastolic peak delay s, diastolic
    / systolic height above the foot, systolic height a.u.) over beats with a diastolic peak
    (at high pressure it can merge into a shoulder)."""
    fs = 500.0
    scen = Scenario.custom([Segment(40, 60, sbp_mmhg=sbp, dbp_mmhg=dbp)])
    y = simulate(scen, 3, ppg_rate=fs, noise=0.0).ppg
    peaks, _ = signal.find_peaks(y, distance=int(0.6 * fs))
    shapes = []
    for p in peaks[2:-2]:
        foot = y[p - int(0.3 * fs):p].min()
        after = y[p:p + int(0.5 * fs)]
        late, _ = signal.find_peaks(after)
        if len(late):
            q = late[0]
            shapes.append((q / fs, (after[q] - foot) / (y[p] - foot), y[p] - foot))
    assert len(shapes) > 15
    delay, ratio, height = np.median(shapes, axis=0)
    return float(delay), float(ratio), float(height)


def test_reflected_wave_comes_earlier_and_larger_with_pressure() -> None:
    low, ref, high = pulse_shape(110, 70), pulse_shape(120, 80), pulse_shape(170, 110)
    # Stiffer arteries (higher PWV): the reflected wave returns sooner and larger.
    assert low[0] > ref[0] > high[0] and low[0] - high[0] > 0.05
    assert low[1] < ref[1] < high[1] and high[1] - low[1] > 0.08
    # Pulse pressure 60 vs 40 mmHg: a larger volume pulse.
    assert high[2] > 1.3 * low[2]


def test_pressure_leaves_the_reference_pulse_exactly_alone() -> None:
    shift, gain = _reflection(np.array([120.0]), np.array([80.0]))
    assert shift[0] == 0.0 and gain[0] == 1.0


def test_atrial_fibrillation_is_irregular_and_in_the_truth() -> None:
    rec = simulate("atrial-fibrillation", 2, channels=ALL)
    beats = rec.truth.beat_times
    rr = np.diff(beats)
    at = beats[1:]

    def cv(x: np.ndarray) -> float:
        return float(x.std() / x.mean())

    assert cv(rr[(at > 5) & (at < 55)]) < 0.08
    af = rr[(at > 100) & (at < 290)]
    assert cv(af) > 0.18
    assert abs(np.corrcoef(af[:-1], af[1:])[0, 1]) < 0.25  # no RR memory in AF
    assert 128 < 60 / af.mean() < 152  # rapid ventricular response, ~140 bpm
    assert set(rec.truth.rhythm[70:290]) == {"af"} and rec.truth.rhythm[10] == "sinus"


def test_cuff_readings_follow_blood_pressure() -> None:
    rec = simulate("hypertensive-crisis", 1)
    times, values = rec.cuff
    assert list(times) == [30.0, 330.0]
    truth = np.stack([rec.truth.sbp_mmhg, rec.truth.dbp_mmhg], axis=1)[times.astype(int)]
    assert np.abs(values - truth).max() < 15
    assert rec.truth.sbp_mmhg.max() == pytest.approx(195)


def test_cgm_tracks_glucose_with_a_lag() -> None:
    hypo = simulate("hypoglycaemia", 1, ppg_rate=10, acc_rate=10)  # fast: CGM is the point
    assert hypo.truth.glucose_mg_dl.min() < 54 and hypo.truth.glucose_mg_dl[0] == 120
    times, cgm = hypo.cgm
    assert np.all(np.diff(times) == CGM_PERIOD_S) and len(times) == 16200 // 300
    plasma = hypo.truth.glucose_mg_dl[times.astype(int)]
    assert np.abs(cgm - plasma).mean() < 15
    assert cgm.min() < 60
    hyper = simulate("hyperglycaemia", 1, ppg_rate=10, acc_rate=10)
    assert hyper.truth.glucose_mg_dl.max() > 300
    # The sensor lags the blood: while glucose rises fast, it reads low.
    rising = np.argmax(np.diff(hyper.truth.glucose_mg_dl)) // 300
    assert hyper.cgm[1][rising + 1] < hyper.truth.glucose_mg_dl[(rising + 1) * 300]


def test_all_channels_on_the_wire() -> None:
    rec = simulate(get_scenario("sleep").with_duration(700), 6, channels=ALL)
    items = list(stream(rec, 2))
    assert hashlib.sha256(b"".join(d for _, d in items)).digest() == hashlib.sha256(
        b"".join(d for _, d in stream(simulate(get_scenario("sleep").with_duration(700), 6,
                                               channels=ALL), 2))).digest()
    decoder = Decoder()
    got = decoder.feed(b"".join(d for _, d in items))
    assert len(got) == len(items) and decoder.stats.crc_errors == decoder.stats.malformed == 0
    by = {c: [f for f in got if f.channel == c] for c in Channel}
    ecg = np.concatenate([f.values[:, 0] for f in by[Channel.ECG]])
    assert np.abs(ecg - rec.ecg).max() < 0.0006 and len(ecg) == 700 * 250
    assert {f.sample_type for f in by[Channel.ECG]} == {SampleType.INT16}
    assert [f.timestamp_us for f in by[Channel.CGM]] == [0, 300_000_000, 600_000_000]
    assert by[Channel.CGM][0].sample_rate_hz == pytest.approx(1 / 300)
    assert [tuple(f.values[0]) for f in by[Channel.BP_CUFF]] == [
        tuple(v) for v in rec.cuff[1]]
    assert by[Channel.BP_CUFF][0].samples.shape == (1, 2)
    # Sent when acquired: a CGM reading goes out at its own time, among the other frames.
    times = [t for t, _ in frames(rec, 2)]
    assert times == sorted(times)


def test_truth_rows_have_every_vital(tmp_path) -> None:
    rec = simulate("tachycardia", 0)
    path = tmp_path / "truth.jsonl"
    rec.truth.to_jsonl(path)

    row = json.loads(path.read_text().splitlines()[20])
    assert set(row) == {"t", "hr_bpm", "motion", "resp_rate_bpm", "sbp_mmhg", "dbp_mmhg",
                        "glucose_mg_dl", "pat_ms", "rhythm", "faults"}
    assert row["rhythm"] == "sinus" and row["faults"] == [] and row["sbp_mmhg"] == 120
