"""Cuffless BP that is honest on real signals (issue 14), with the shipped int8 bundle on a real
TFLite interpreter: the estimate does not depend on the sensors' units, gain or offset;
implausible windows are published as "uncertain" and never calibrated against; a wearable's
own cuff readings calibrate it when the configuration allows, through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from device_sim import get_scenario, simulate
from edge.cli import main
from edge.config import AlarmsConfig, config_from_dict
from edge.errors import CommandError, ConfigError
from edge.estimate import GOOD, UNCALIBRATED, UNCERTAIN, BloodPressureRunner
from edge.features import (
    BP_SCALARS,
    bp_amplitude_reference,
    bp_log_amplitude,
    bp_relative_amplitude,
)
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from training import bp, bp_data
from training.windows import extract_channel_windows
from wire import recordings

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
PRE = bp.PREPROCESSING
SHAPE = PRE.feature_params["shape_points"]
AMPLITUDE = SHAPE + BP_SCALARS.index("amplitude")


@pytest.fixture(scope="module")
def model():
    return load_model(MODELS / "bp.json")


@pytest.fixture(scope="module")
def recording():
    return simulate(get_scenario("hypotension").with_duration(120), 2,
                    channels=("ppg", "ecg", "bp"))


def windows(rec, ecg_gain=1.0, ecg_offset=0.0, ppg_gain=1.0, ppg_offset=0.0):
    """The runtime's conditioning and feature of the recording with its sensors rescaled."""
    return extract_channel_windows(PRE, [(rec.ecg * ecg_gain + ecg_offset, rec.ecg_rate),
                                         (rec.ppg * ppg_gain + ppg_offset, rec.ppg_rate)])


UNITS = [
    (1e-3, 0.0, 1e-3, 0.0),  # ECG in V, PPG in a unit a thousand times larger
    (1e3, -2e3, 1e3, 5e6),  # ECG in uV with a baseline; PPG in finer counts on a large DC
    (1.0, 0.0, 1e-5, 2.5),  # PPG in volts on a 2.5 V reference (PhysioNet "NU")
    (-1.0, 0.0, 0.02, 0.0),  # an inverted lead and a small PPG
]
CAL_AT_S = 30.0  # the recording's cuff reading (device_sim: at 30 s)


@pytest.mark.parametrize(("ecg_gain", "ecg_offset", "ppg_gain", "ppg_offset"), UNITS)
def test_estimates_do_not_depend_on_sensor_units(model, recording, ecg_gain, ecg_offset,
                                                 ppg_gain, ppg_offset):
    ref = windows(recording)
    got = windows(recording, ecg_gain, ecg_offset, ppg_gain, ppg_offset)
    assert len(ref.features) == len(got.features) >= (120 - 16) // 4  # 16 s every 4 s
    assert (ref.features[:, -1] == 1).all()  # every window found its beats
    # The feature function's amplitude is in the PPG's units: it moves by ln(gain) ...
    np.testing.assert_allclose(bp_log_amplitude(got.features) - bp_log_amplitude(ref.features),
                               np.log(ppg_gain), atol=1e-4)
    # ... and the model takes it relative to the amplitude at calibration, where gain cancels.
    x_ref, x_got = (bp_data.relative_to_calibration(w.features, w.end_s, CAL_AT_S, SHAPE)
                    for w in (ref, got))
    assert np.ptp(x_ref[:, AMPLITUDE]) > 0.1  # the pulse grows and shrinks with the pressure
    np.testing.assert_allclose(x_got, x_ref, atol=1e-4)
    before = np.stack([model.estimates(x) for x in x_ref])
    after = np.stack([model.estimates(x) for x in x_got])
    step = model.manifest.output.scale * np.asarray(model.manifest.output_params["scale"])
    assert (np.abs(after - before) <= step + 1e-9).all()  # at most one int8 output step
    runner = BloodPressureRunner("d", model)
    low, high, _ = runner._range_limits()
    assert ((after > low + 5) & (after < high - 5)).all()  # nowhere near the floor (2.0.0's)


def published(model, rec, ppg_gain=1.0, ppg_offset=0.0, ppg=None):
    """(end_s, systolic, diastolic, quality) a BloodPressureRunner publishes for each window of
    the recording (its PPG rescaled, or `ppg` instead), calibrated with its cuff reading when
    it comes; and the runner."""
    from training.windows import condition_channels

    ppg = rec.ppg if ppg is None else ppg
    ecg_w, ppg_w = condition_channels(PRE, [(rec.ecg, rec.ecg_rate),
                                            (ppg * ppg_gain + ppg_offset, rec.ppg_rate)])
    runner = BloodPressureRunner("d", model)
    (cal_at_s,), (cuff,) = rec.cuff
    assert cal_at_s == CAL_AT_S
    out = []
    for k in range(min(len(ecg_w), len(ppg_w))):
        end_s = (PRE.window_samples + PRE.hop_samples * k) / PRE.sample_rate_hz
        outputs = runner.outputs(runner.feature(ecg_w[k], ppg_w[k], **runner.params))
        sbp, dbp = runner.interpret(outputs, GOOD, None, end_s)
        out.append((end_s, sbp.value, dbp.value, sbp.quality))
        if end_s <= cal_at_s < end_s + PRE.hop_s:  # the cuff reading comes
            runner.calibrate(*cuff, "nurse", "now")
    return out, runner


@pytest.mark.parametrize(("ppg_gain", "ppg_offset"), [(g, o) for _, _, g, o in UNITS])
def test_a_calibrated_runner_publishes_the_same_whatever_the_ppg_units(model, recording,
                                                                       ppg_gain, ppg_offset):
    ref, _ = published(model, recording)
    got, _ = published(model, recording, ppg_gain, ppg_offset)
    assert [q for *_, q in got] == [q for *_, q in ref]
    assert {q for t, *_, q in ref if t > CAL_AT_S} == {GOOD}  # calibrated, all plausible
    step = model.manifest.output.scale * np.asarray(model.manifest.output_params["scale"])
    diff = np.abs(np.array([v[1:3] for v in got]) - np.array([v[1:3] for v in ref]))
    assert (diff <= step + 0.01).all()  # at most one int8 step (offsets are rounded to 0.01)


def test_the_runtime_calibrates_as_training_scores(model, recording):
    """The runner's calibrated estimates are training's: the model on the windows relative to
    the amplitude of the 30 s before the cuff reading, offset by the cuff minus their median
    (`training.bp.calibrate`): one code path for the amplitude reference."""
    w = windows(recording)
    x = bp_data.relative_to_calibration(w.features, w.end_s, CAL_AT_S, SHAPE)
    pred = np.stack([model.estimates(row) for row in x])
    (cuff,) = recording.cuff[1]
    n = len(pred)
    labelled = bp_data.BpWindows(
        x=x, sbp=np.zeros(n), dbp=np.zeros(n), hr=np.zeros(n), motion=np.zeros(n),
        end_s=w.end_s, subject=np.zeros(n, np.int64), cal_time=np.full(n, CAL_AT_S),
        cal_sbp=np.full(n, cuff[0]), cal_dbp=np.full(n, cuff[1]))
    expected, scored = bp.calibrate(pred, labelled)
    got = np.array([v[1:3] for v in published(model, recording)[0]])
    assert scored.sum() == (w.end_s > CAL_AT_S).sum() > 10
    np.testing.assert_allclose(got[scored], expected[scored], atol=0.006)  # offsets: 0.01
    # before the calibration: the uncalibrated estimate sees the amplitude ratio 1
    before = np.stack([model.estimates(row) for row in bp_relative_amplitude(w.features, None)])
    np.testing.assert_allclose(got[~scored], before[~scored], atol=1e-9)


@pytest.mark.parametrize(("gain", "doubted"), [(1.5, False), (10.0, True), (0.1, True)])
def test_a_ppg_gain_change_after_calibration_beyond_the_models_ratios_is_uncertain(
        model, recording, gain, doubted):
    """A sensor whose gain (or seat) changes after the calibration: within the amplitude
    ratios the model takes (0.22-4.5) it is a pulse that grew or shrank; beyond them the
    model's clipped input cannot say, so the window is uncertain and says why."""
    change_at_s = 60.0
    after = np.arange(len(recording.ppg)) >= change_at_s * recording.ppg_rate
    dc = recording.ppg.mean()
    ppg = np.where(after, dc + (recording.ppg - dc) * gain, recording.ppg)
    out, runner = published(model, recording, ppg=ppg)
    clean = [q for t, *_, q in out if t >= change_at_s + PRE.window_s + 4]  # past the step
    assert len(clean) >= 5
    assert {q for t, *_, q in out if CAL_AT_S < t <= change_at_s} == {GOOD}
    if doubted:
        assert set(clean) == {UNCERTAIN}
        why = re.match(r"PPG pulse amplitude x([\d.e+-]+) of the calibration's, outside the "
                       r"0\.22-4\.48 the model takes", runner._doubts[-1][1])
        assert why and gain / 2 < float(why[1]) < gain * 2, runner._doubts[-1][1]
    else:
        assert set(clean) == {GOOD}


def test_the_amplitude_reaches_the_model_only_relative_to_calibration():
    assert model_input_size() == SHAPE + len(BP_SCALARS)
    x = np.zeros((3, SHAPE + len(BP_SCALARS)), np.float32)
    x[:, -1] = 1.0  # valid
    x[:, AMPLITUDE] = np.log([2000.0, 1000.0, 500.0])
    assert bp_amplitude_reference(x) == pytest.approx(np.log(1000.0))
    rel = bp_relative_amplitude(x, bp_amplitude_reference(x))[:, AMPLITUDE]
    np.testing.assert_allclose(rel, np.log([2.0, 1.0, 0.5]) / 0.5, atol=1e-6)
    assert (bp_relative_amplitude(x, None)[:, AMPLITUDE] == 0).all()  # no calibration yet
    x[0, -1] = 0.0  # a window without beats neither sets the reference nor reads one
    assert bp_amplitude_reference(x) == pytest.approx(np.log(np.sqrt(1000.0 * 500.0)))
    assert bp_relative_amplitude(x, 0.0)[0, AMPLITUDE] == 0.0


def model_input_size() -> int:
    return json.loads((MODELS / "bp.json").read_text())["input"]["shape"][1]


def test_manifest_carries_training_bounds_and_the_experimental_mark(model):
    p = model.manifest.plausibility
    n = model_input_size()
    assert len(p["input_low"]) == len(p["input_high"]) == n
    assert all(lo <= hi for lo, hi in zip(p["input_low"], p["input_high"], strict=True))
    assert p["input_low"][-1] == p["input_high"][-1] == 1.0  # "valid" is always 1 in training
    assert p["output_low"][0] < 90 < 180 < p["output_high"][0]
    assert model.manifest.experimental is True


def runner_with_window(model, recording):
    """A runner that has featurised one real window of the recording (as _estimate does)."""
    runner = BloodPressureRunner("d", model)
    w = bp_data.recording_windows(recording, PRE)
    ecg_w, ppg_w = (np.asarray(c) for c in _raw_window(recording))
    runner.feature(ecg_w, ppg_w, **runner.params)
    return runner, w


def _raw_window(rec):
    from training.windows import condition_channels

    ecg, ppg = condition_channels(PRE, [(rec.ecg, rec.ecg_rate), (rec.ppg, rec.ppg_rate)])
    return ecg[3], ppg[3]


def test_an_output_at_the_models_range_limit_is_uncertain(model, recording):
    runner, _ = runner_with_window(model, recording)
    low, high, _ = runner._range_limits()
    floor = np.array([low[0], low[1]])  # what 2.0.0 gave for a PPG in the record's units
    (sbp, dbp) = runner.interpret(floor, GOOD, None, 20.0)
    assert sbp.quality == dbp.quality == UNCERTAIN
    assert sbp.details == {"experimental": True}
    (sbp, _) = runner.interpret(np.array([118.0, 75.0]), GOOD, None, 24.0)
    assert sbp.quality == UNCALIBRATED
    (sbp, _) = runner.interpret(np.array([high[0], 75.0]), GOOD, None, 28.0)
    assert sbp.quality == UNCERTAIN


def test_a_window_outside_the_training_distribution_is_uncertain(model, recording):
    runner, _ = runner_with_window(model, recording)
    bounds = model.manifest.plausibility
    runner._features = runner._features.copy()
    runner._features[SHAPE + BP_SCALARS.index("rr_cv")] = bounds["input_high"][
        SHAPE + BP_SCALARS.index("rr_cv")] + 0.5
    assert "rr_cv" in runner.doubt(np.array([118.0, 75.0]), 20.0)
    runner._features[-1] = 0.0  # no beats found
    (sbp, _) = runner.interpret(np.array([118.0, 75.0]), GOOD, None, 20.0)
    assert sbp.quality == UNCERTAIN
    # a sensor problem stays a sensor problem
    (sbp, _) = runner.interpret(np.array([118.0, 75.0]), "sensor", None, 24.0)
    assert sbp.quality == "sensor"


def test_a_jump_at_a_steady_heart_rate_is_uncertain_until_it_holds(model, recording):
    runner, _ = runner_with_window(model, recording)
    qualities = []
    for t, sbp in enumerate([120, 122, 150, 121, 119, 160, 161, 159, 158]):
        (est, _) = runner.interpret(np.array([sbp, 75.0]), GOOD, None, 16.0 + 4 * t)
        qualities.append(est.quality)
    # 150: an isolated 28 mmHg jump; 160, 161: a jump; 159, three agreeing: the new level
    assert qualities == [UNCALIBRATED, UNCALIBRATED, UNCERTAIN, UNCALIBRATED, UNCALIBRATED,
                         UNCERTAIN, UNCERTAIN, UNCALIBRATED, UNCALIBRATED]


def test_a_calibration_against_only_implausible_windows_is_refused_with_the_reason(
        model, recording):
    runner, _ = runner_with_window(model, recording)
    low, _, _ = runner._range_limits()
    for t in range(8):
        runner.interpret(np.array([low[0], low[1]]), GOOD, None, 16.0 + 4 * t)
    with pytest.raises(CommandError, match=r"estimates of the last 30 s are all implausible "
                       r"\(systolic at the model's range limit"):
        runner.calibrate(120, 80, "nurse", "now")
    assert runner.calibration is None
    runner.interpret(np.array([118.0, 75.0]), GOOD, None, 50.0)
    cal = runner.calibrate(120, 80, "nurse", "now")  # against the one usable window only
    # re-estimated against the amplitude it fixes (its own: a ratio of 1, as before it)
    estimate = model.estimates(bp_relative_amplitude(runner._features, None))
    assert cal.systolic_offset == pytest.approx(120 - estimate[0], abs=0.005)
    assert cal.diastolic_offset == pytest.approx(80 - estimate[1], abs=0.005)
    assert cal.ppg_log_amplitude == bp_log_amplitude(runner._measured)


def test_calibrate_command_on_an_implausible_stream_is_refused_on_the_reply(model, recording):
    """Through the pipeline's command path (what the MQTT reply carries): electrodes that
    pick up only a slow sway, no QRS, give windows without beats the model never saw."""
    from edge.commands import Command

    t = np.arange(len(recording.ecg)) / recording.ecg_rate
    sine = recording.__class__(**{**vars(recording), "ecg": 2.0 * np.sin(2 * np.pi * 0.2 * t),
                                  "cuff": None})
    pipeline = DevicePipeline("d", [model], AlarmsConfig(), Topics("w", "n"))
    vitals = []
    for _, data in recordings.stream(sine):
        vitals += [m.payload for m in pipeline.feed(data) if m.topic.endswith("/vitals")]
    assert vitals and all(v["quality"] in (UNCERTAIN, "sensor") for v in vitals), {
        v["quality"] for v in vitals}
    with pytest.raises(CommandError, match="implausible") as err:
        pipeline.command(Command("c1", "nurse", "calibrate", systolic=120, diastolic=80))
    assert err.value.command_id == "c1"


def test_cuff_option_is_off_by_default_and_validated():
    assert config_from_dict({}).bp_cuff_calibration is False
    assert config_from_dict({"bp_cuff_calibration": True}).bp_cuff_calibration is True
    with pytest.raises(ConfigError, match="'bp_cuff_calibration' must be bool"):
        config_from_dict({"bp_cuff_calibration": "yes"})


def write_csv(path: Path, rec) -> None:
    """ECG, PPG and the cuff readings of a simulated recording as a CSV file (one rate)."""
    times, cuff = rec.cuff
    rows = {round(t * rec.ppg_rate): r for t, r in zip(times, cuff, strict=True)}
    lines = ["time_s,ppg,ecg,sbp,dbp"]
    for i, (ppg, ecg) in enumerate(zip(rec.ppg, rec.ecg, strict=True)):
        s, d = (f"{v:.0f}" for v in rows[i]) if i in rows else ("", "")
        lines.append(f"{i / rec.ppg_rate:.6f},{ppg:.0f},{ecg:.4f},{s},{d}")
    path.write_text("\n".join(lines) + "\n")


def replay_bp(capsys, path: Path, *extra: str) -> tuple[list[dict], str]:
    out = path.with_suffix(".jsonl")
    code = main(["replay", str(path), "--models", str(MODELS), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    payloads = [json.loads(line)["payload"] for line in out.read_text().splitlines()]
    return [p for p in payloads if p.get("vital") == "systolic_bp"], err


def test_recorded_cuff_readings_calibrate_a_replay_when_asked(tmp_path, capsys):
    rec = simulate(get_scenario("hypotension").with_duration(150), 4, ppg_rate=128.0,
                   ecg_rate=128.0, channels=("ppg", "ecg", "bp"))
    times, cuff = rec.cuff
    assert len(times) >= 1 and times[0] < 60
    path = tmp_path / "labelled.csv"
    write_csv(path, rec)

    plain, err = replay_bp(capsys, path)
    assert plain and all(v["quality"] in (UNCALIBRATED, UNCERTAIN) for v in plain)
    assert "calibrated" not in err

    calibrated, err = replay_bp(capsys, path, "--cuff-calibration")
    assert f"cuff reading {cuff[0][0]:g}/{cuff[0][1]:g} mmHg at device time " \
           f"{times[0]:.0f} s: calibrated" in err
    before = [v for v in calibrated if v["device_time_s"] <= times[0]]
    after = [v for v in calibrated if v["device_time_s"] > times[0] + 4]
    assert before and all(v["quality"] != GOOD for v in before)
    good = [v for v in after if v["quality"] == GOOD]
    assert len(good) > 0.8 * len(after)  # calibrated: BP estimates are usable now
    assert all(v["details"] == {"experimental": True} for v in calibrated)
    # scored end to end against the simulator's truth (window means)
    truth = [rec.truth.sbp_mmhg[int(v["device_time_s"]) - 16:int(v["device_time_s"])].mean()
             for v in good]
    error = np.array([v["value"] for v in good]) - truth
    assert np.median(np.abs(error)) < 10, error
    # the same vitals as without the cuff, shifted by the calibration's offset
    shift = {round(v["value"] - p["value"], 1) for v, p in zip(calibrated, plain, strict=True)
             if v["device_time_s"] > times[0] + 4 and v["device_time_s"] < times[-1]}
    assert len(shift) <= 2  # one offset (rounding to 0.1 mmHg may show two)


def test_ppg_only_morphology_is_the_pulse_shape_whatever_the_units():
    rec = simulate(get_scenario("normal").with_duration(10), 1, ppg_rate=250.0,
                   channels=("ppg",))
    from scipy.signal import sosfiltfilt

    from edge.features import ppg_pulse_morphology
    from edge.signal import bandpass_sos

    # 2.1 s, filtered as PPG-BP's curators filtered theirs
    seg = sosfiltfilt(bandpass_sos(250.0, (0.5, 10.0), 2), rec.ppg)[500:1025]
    a = ppg_pulse_morphology(seg, fs=250.0)
    b = ppg_pulse_morphology(seg * 1e-4 + 3.0, fs=250.0)
    assert a[-1] == 1.0 and 0.05 < a[SHAPE] < 0.4  # a complete pulse; rise time in s
    assert a[1] < 0.1 and a[:SHAPE].max() == pytest.approx(1.0, abs=0.05)  # foot, then peak
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (ppg_pulse_morphology(np.zeros(525), fs=250.0) == 0).all()


def test_evaluate_bp_on_a_missing_folder_is_one_line(tmp_path, capsys):
    from training.cli import main as train_main

    assert train_main(["evaluate", "bp", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the PPG-BP dataset" in err[0] and "--data" in err[0]
    assert train_main(["evaluate", "hr2", "--data", str(tmp_path)]) == 2
    assert "no evaluation for model 'hr2'" in capsys.readouterr().err


def test_evaluate_bp_on_the_real_ppg_bp_set(tmp_path):
    """As the card and `make eval` run it: --real-data is the shared datasets folder."""
    from training import bp_real
    from training.cli import main as train_main

    folder = bp_real.default_dir()
    if not (folder / "PPG-BP dataset.xlsx").is_file():
        pytest.skip(f"PPG-BP dataset not at {folder} (shared data; see docs/models.md)")
    assert train_main(["evaluate", "bp", "--real-data", str(folder.parent),
                       "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "bp_real_data.json").read_text())
    assert r["people"] >= 200 and r["people_scored"] >= 0.95 * r["people"]
    for target, (lo, hi) in (("sbp", (110, 140)), ("dbp", (60, 80))):
        assert lo < r[target]["truth"]["mean"] < hi  # the cuff readings were read
        cv = r[target]["cross_validated"]
        assert set(cv) >= {"training-fold mean", "PPG morphology + heart rate", "age + sex"}
    assert (tmp_path / "bp_real_data.md").read_text().startswith("# bp: what real PPG")


def test_a_wearables_cuff_frames_are_checked_before_they_calibrate(model, recording, tmp_path):
    """Hostile or broken BP_CUFF frames: an impossible reading, a lead-off one and a flood
    are not used; a good one calibrates and is persisted like an operator's command."""
    from edge.calibration import CalibrationStore
    from wire import Channel, Flag, Frame, encode_frame

    rec = recording.__class__(**{**vars(recording), "cuff": None})
    store = CalibrationStore(tmp_path / "calibration.json")
    pipeline = DevicePipeline("d", [model], AlarmsConfig(), Topics("w", "n"),
                              cuff_calibration=True, calibrations=store)
    for _, data in recordings.stream(rec):
        if pipeline.last_device_time_s > 80:
            break
        pipeline.feed(data)
    bp_runner = pipeline.estimator.blood_pressure

    def cuff(seq, t, sbp, dbp, flags=Flag.NONE):
        pipeline.feed(encode_frame(Frame(1, seq, round(t * 1e6), Channel.BP_CUFF, 1 / 300,
                                         np.array([[sbp, dbp]], "<i2"), 1.0, flags)))

    cuff(0, 78, 400, 80, Flag.BOOT)
    cuff(1, 79, 120, 80, Flag.LEAD_OFF)
    assert bp_runner.calibration is None
    cuff(2, 80, 121, 79)
    cuff(3, 81, 150, 100)  # one second later: not a new measurement
    events = list(pipeline.cuff_events)
    assert len(events) == 4
    assert "400/80 mmHg" in events[0] and "not a cuff reading" in events[0]
    assert "lead-off" in events[1]
    assert "121/79 mmHg at device time 80 s: calibrated" in events[2]
    assert "after the last one used" in events[3]
    assert (bp_runner.calibration.systolic_mmhg, bp_runner.calibration.operator) == (121, "cuff")
    stored = CalibrationStore(tmp_path / "calibration.json").get("d", model.manifest.sha256)
    assert stored == bp_runner.calibration  # kept across a restart, like a command's


def test_cuff_frames_do_nothing_unless_enabled(model, recording):
    pipeline = DevicePipeline("d", [model], AlarmsConfig(), Topics("w", "n"))
    for _, data in recordings.stream(recording):  # its cuff reading at 30 s
        pipeline.feed(data)
    assert pipeline.estimator.blood_pressure.calibration is None
    assert not pipeline.cuff_events
