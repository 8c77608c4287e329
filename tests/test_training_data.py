"""Training data: split by subject, reproducible, labels that match the signal. No TensorFlow."""

import numpy as np
import pytest

from edge.features import spectrum_frequencies
from training import data, hr
from training.windows import extract_windows


def subject(scenario="rest", *, augment=False, seed=11, ppg_rate=64.0, acc_rate=32.0,
            has_acc=True, duration_s=None):
    return data.Subject(split="test", index=seed, seed=seed, scenario=scenario,
                        duration_s=duration_s, ppg_rate=ppg_rate, acc_rate=acc_rate, noise=1.0,
                        has_acc=has_acc, augment=augment)


def spectral_peak_bpm(windows):
    p = hr.PREPROCESSING.feature_params
    bpm = 60 * spectrum_frequencies(hr.PREPROCESSING.sample_rate_hz, p["nfft"], p["f_lo"],
                                    p["f_hi"])
    return bpm[windows.x[:, :, 0].argmax(axis=1)]


@pytest.mark.parametrize("quick", [True, False])
def test_splits_never_share_a_subject(quick):
    splits = hr.plan_splits(hr.Plan.for_run(quick), seed=3)
    ids = {name: {s.id for s in subjects} for name, subjects in splits.items()}
    seeds = {name: {s.seed for s in subjects} for name, subjects in splits.items()}
    for a in ids:
        assert len(ids[a]) == len(splits[a]), f"duplicate subject id in {a}"
        for b in ids:
            if a < b:
                assert not ids[a] & ids[b], f"{a} and {b} share subjects"
                assert not seeds[a] & seeds[b], f"{a} and {b} share simulator seeds"
    assert not any(s.augment for s in splits["test"] + splits["val"])
    assert all(s.augment for s in splits["train"])


def test_same_seed_same_windows_whatever_the_workers():
    subjects = hr.plan_splits(hr.Plan.for_run(True), seed=5)["train"][:3]
    one = data.build_windows(subjects, hr.PREPROCESSING, workers=1)
    two = data.build_windows(subjects, hr.PREPROCESSING, workers=2)
    np.testing.assert_array_equal(one.x, two.x)
    np.testing.assert_array_equal(one.hr_bpm, two.hr_bpm)
    np.testing.assert_array_equal(one.subject, two.subject)
    other = data.build_windows(hr.plan_splits(hr.Plan.for_run(True), seed=6)["train"][:1],
                               hr.PREPROCESSING, workers=1)
    assert not np.array_equal(other.x[:10], one.x[:10])


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize(("ppg_rate", "acc_rate"), [(32.0, 32.0), (64.0, 32.0), (256.0, 128.0)])
def test_labels_agree_with_the_pulse_at_rest(augment, ppg_rate, acc_rate):
    """At rest the PPG's spectral peak is the heart rate: the label must sit on it, also after
    augmentation stretched the clock (label divided by the same factor) and at every rate."""
    w = data.subject_windows(subject(augment=augment, ppg_rate=ppg_rate, acc_rate=acc_rate),
                             hr.PREPROCESSING)
    expected = (300 - 8) // 2 + 1  # clock augmentation stretches the recording by ±3%
    assert len(w) == expected if not augment else abs(len(w) - expected) <= 5
    assert np.median(np.abs(spectral_peak_bpm(w) - w.hr_bpm)) < 1.5
    assert not w.moving.any()
    assert w.x.dtype == np.float32 and w.x.shape[1:] == (100, 3)  # PPG, motion, autocorr.


def test_motion_is_labelled_and_measured():
    w = data.subject_windows(subject("exercise", seed=4), hr.PREPROCESSING)
    assert w.moving.all()
    assert (w.motion_g > 0.05).mean() > 0.9


def test_no_accelerometer_gives_a_zero_motion_column():
    w = data.subject_windows(subject(has_acc=False), hr.PREPROCESSING)
    assert not w.x[:, :, 1].any()
    assert not w.motion_g.any()


def test_windows_end_on_the_runtime_grid():
    rec_rate = 128.0
    rng = np.random.default_rng(0)
    ppg = rng.normal(size=int(rec_rate * 30))
    win = extract_windows(hr.PREPROCESSING, ppg, rec_rate, None, None)
    np.testing.assert_allclose(win.end_s, np.arange(8.0, 30.0 + 1e-9, 2.0))


def test_randomised_simulator_is_seeded_and_covers_the_flat_prior():
    from training import hr_sim

    a, b = hr_sim.simulate(11), hr_sim.simulate(11)
    assert np.array_equal(a.ppg, b.ppg) and np.array_equal(a.hr_bpm, b.hr_bpm)
    starts = np.array([hr_sim.simulate(s, duration_s=10).hr_bpm[0] for s in range(200)])
    lo, hi = hr_sim.HR_RANGE_BPM
    assert starts.min() >= lo and starts.max() <= hi
    # flat: each third of the range holds roughly a third of the starts
    thirds = np.histogram(starts, bins=3, range=(lo, hi))[0]
    assert thirds.min() > 40, thirds


def test_randomised_windows_are_labelled_with_their_pulse():
    from training import hr_sim

    w = hr_sim.recording_windows(5, hr.PREPROCESSING, 1)
    assert w.x.shape[1:] == (100, 3) and len(w) >= (120 - 8) // 2  # resampler lag: -1
    assert np.all((w.hr_bpm >= 35) & (w.hr_bpm <= 210))
