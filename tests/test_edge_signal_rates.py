"""Sensor rates that are not an integer multiple of the model rate, or slower than it:
streaming rational resampling equals offline processing, keeps the device clock, and feeds
the HR model."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from device_sim import Scenario, frames, simulate
from edge.config import AlarmsConfig
from edge.errors import StreamError
from edge.estimate import ChannelTrack
from edge.infer import Model, load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from edge.signal import Conditioner, Decimator, Resampler, bandpass_sos, rate_ratio
from wire import Channel, Frame, encode_frame

MODELS = Path(__file__).resolve().parents[1] / "models"
BAND = (0.5, 4.0)


def random_blocks(x: np.ndarray, rng: np.random.Generator, n: int = 40) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=n, replace=False))
    return np.split(x, cuts)


def sensor_frames(x: np.ndarray, rate: float, first_index: int = 0,
                  block: int = 29) -> list[Frame]:
    """x (n, axes) as frames whose first sample has sensor index `first_index`."""
    return [Frame(1, seq, round((first_index + i) / rate * 1e6), Channel.PPG, rate,
                  x[i : i + block].astype(np.float32))
            for seq, i in enumerate(range(0, len(x), block))]


@pytest.mark.parametrize("rate", [100.0, 117.0, 125.0, 50.0, 117.3, 25.0, 20.0, 17.3, 16.0])
@pytest.mark.parametrize("axes", [1, 3])
def test_streaming_resampling_equals_offline(rate, axes):
    """Down (100 Hz) or up (a 20 Hz watch PPG for a 32 Hz model): the same code path."""
    rng = np.random.default_rng(int(rate) * axes)
    x = 50_000 + rng.normal(0, 100, (int(rate * 40), axes)).cumsum(axis=0)
    streaming = Conditioner(rate, 32.0, BAND, min_sensor_rate=16.0)
    got = np.concatenate([streaming.process(b) for b in random_blocks(x, rng)])
    offline = Conditioner(rate, 32.0, BAND, min_sensor_rate=16.0).process(x)
    np.testing.assert_allclose(got, offline, rtol=1e-9, atol=1e-9)
    # ... and both are resample_poly of the band-passed signal, sample for sample.
    sos = bandpass_sos(rate, BAND)
    filtered, _ = signal.sosfilt(sos, x, axis=0, zi=signal.sosfilt_zi(sos)[:, :, None] * x[0])
    r = streaming.resampler
    assert isinstance(r, Resampler) and r.up / r.down == pytest.approx(32.0 / rate)
    reference = signal.resample_poly(filtered, r.up, r.down, axis=0)
    # The last outputs wait for the filter's delay: 10 periods of the slower rate.
    assert len(reference) - len(got) <= 10 * max(r.up, r.down) / r.down + 1
    np.testing.assert_allclose(got, reference[: len(got)], rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize(("rate", "up", "down"), [
    (100.0, 8, 25), (117.0, 32, 117), (float(np.float32(117.3)), 320, 1173),
    (99.97, 3200, 9997)])
def test_rate_ratios_are_exact_for_the_rates_devices_report(rate, up, down):
    """117.3 Hz arrives as float32 117.30000305...: still exactly 320/1173, so the grid
    does not drift from the device clock."""
    assert rate_ratio(32.0, rate) == Fraction(up, down)


def test_a_sensor_rate_beyond_the_ratio_limit_is_refused_by_name():
    with pytest.raises(ValueError, match=r"1e\+09 Hz is more than 10000 times the model rate"):
        Conditioner(1e9, 32.0, BAND)


@pytest.mark.parametrize(("rate", "factor"), [(64.0, 2), (32.0, 1), (256.0, 8), (64.00001, 2)])
def test_integer_ratios_keep_the_plain_decimator(rate, factor):
    resampler = Conditioner(rate, 32.0, BAND).resampler
    assert isinstance(resampler, Decimator) and resampler.factor == factor


@pytest.mark.parametrize("rate", [100.0, 117.0, 20.0, 25.0])
def test_resampling_keeps_a_sines_frequency_amplitude_and_timing(rate):
    f, n = 1.3, int(rate * 30)
    x = np.sin(2 * np.pi * f * np.arange(n) / rate)
    rng = np.random.default_rng(7)
    resampler = Conditioner(rate, 32.0, BAND, min_sensor_rate=16.0).resampler
    y = np.concatenate([resampler.process(b) for b in random_blocks(x, rng)])
    j = np.arange(len(y))[64:]  # past the start-up transient
    # Output j is the sine at time j / 32 s: same frequency, amplitude and phase.
    np.testing.assert_allclose(y[j], np.sin(2 * np.pi * f * j / 32.0), atol=2e-3)
    # Through the band-pass too: the spectral peak stays put, the amplitude is the filter's.
    conditioned = Conditioner(rate, 32.0, BAND, min_sensor_rate=16.0).process(x)[320:]
    spectrum = np.abs(np.fft.rfft(conditioned * np.hanning(len(conditioned)), 8192))
    assert np.fft.rfftfreq(8192, 1 / 32.0)[np.argmax(spectrum)] == pytest.approx(f, abs=0.01)
    _, gain = signal.sosfreqz(bandpass_sos(rate, BAND), [f], fs=rate)
    assert np.sqrt(2) * conditioned.std() == pytest.approx(abs(gain[0]), rel=0.01)


def test_channels_at_different_rates_and_start_times_share_the_device_clock():
    """Streams at 117, 100 and 32 Hz that start at different times hold the same sine at the
    same model-rate indices: sample j is the band-passed signal at device time j / 32 s."""
    f = 1.2
    for rate, start_s in ((117.0, 0.0), (32.0, 3.3), (100.0, 1.01), (20.0, 2.05)):
        k0 = round(start_s * rate)
        x = np.sin(2 * np.pi * f * (k0 + np.arange(int(rate * 30))) / rate)[:, None]
        track = ChannelTrack("hr@test", Channel.PPG, 32.0, BAND, 4, min_sensor_rate=16.0)
        for frame in sensor_frames(x, rate, k0):
            track.add(frame)
        got, bad = track.window(20 * 32, 28 * 32)
        _, gain = signal.sosfreqz(bandpass_sos(rate, BAND), [f], fs=rate)
        t = np.arange(20 * 32, 28 * 32) / 32.0
        expected = np.abs(gain[0]) * np.sin(2 * np.pi * f * t + np.angle(gain[0]))
        assert not bad
        # One sensor sample of misalignment at 117 Hz would be an error of 0.06.
        np.testing.assert_allclose(got[:, 0], expected, atol=5e-3)


def test_a_gap_in_a_resampled_stream_marks_only_the_samples_it_covers_bad():
    rate = 117.0
    x = np.sin(2 * np.pi * 1.2 * np.arange(int(rate * 20)) / rate)[:, None]
    track = ChannelTrack("hr@test", Channel.PPG, 32.0, BAND, 4)
    sent = sensor_frames(x, rate)
    lost = {frame.seq for frame in sent if 10.0 <= frame.timestamp_us / 1e6 < 10.5}
    for frame in sent:
        if frame.seq not in lost:
            track.add(frame)
    track.window(0, track.end)
    gap_s = np.flatnonzero(track.bad) / 32.0
    first_lost = min(f.timestamp_us for f in sent if f.seq in lost) / 1e6
    last_lost = max(f.timestamp_us / 1e6 + 29 / rate for f in sent if f.seq in lost)
    assert gap_s.min() == pytest.approx(first_lost, abs=1 / 32.0)
    assert gap_s.max() == pytest.approx(last_lost, abs=1 / 32.0)
    assert len(gap_s) == pytest.approx((last_lost - first_lost) * 32.0, abs=2)


def test_clock_drift_is_not_mistaken_for_lost_samples():
    """A device clock 200 ppm fast gains a 64 Hz sample every 78 s: the track holds one
    sample to stay on the device clock, without marking anything bad (it used to mark 8 s
    of windows bad each time, and kept a technical alarm up). A lost frame, or a timestamp
    jump without one (a gap in a CSV recording), still marks its samples bad."""
    rate = 64.0
    x = np.sin(2 * np.pi * 1.2 * np.arange(int(rate * 600)) / rate)[:, None]

    def fed(frames: list[Frame]) -> ChannelTrack:
        track = ChannelTrack("hr@test", Channel.PPG, 32.0, BAND, 4)
        for frame in frames:
            track.add(frame)
        track.window(0, track.end)
        return track

    drifting = [Frame(f.device_id, f.seq, round(f.timestamp_us * (1 + 200e-6)), f.channel,
                      f.sample_rate_hz, f.samples) for f in sensor_frames(x, rate, block=16)]
    track = fed(drifting)
    assert not track.bad.any()
    assert track.end == pytest.approx(600 * (1 + 200e-6) * 32, abs=12)  # on the device clock

    lost = fed([f for f in drifting if f.seq != 1000])
    assert 7 <= lost.bad.sum() <= 9  # the missing 16 samples at 64 Hz, at 32 Hz
    jumped = fed([*drifting[:1000], *(Frame(f.device_id, f.seq - 1, f.timestamp_us,
                                            f.channel, f.sample_rate_hz, f.samples)
                                      for f in drifting[1001:])])
    assert 7 <= jumped.bad.sum() <= 9


def test_a_sensor_rate_below_the_model_rate_is_a_stream_error_naming_both():
    """Without min_sensor_rate_hz in its manifest a model takes its own rate and up."""
    x = np.zeros((100, 1))
    track = ChannelTrack("bp@1.0.0", Channel.PPG, 32.0, BAND, 4)
    with pytest.raises(StreamError, match=r"PPG at 25 Hz .*bp@1\.0\.0 \(32 Hz\): sensor rate "
                                          r"25 Hz is below the 32 Hz this model takes; record "
                                          r"at 32 Hz or faster"):
        track.add(sensor_frames(x, 25.0)[0])


@pytest.mark.parametrize(("rate", "min_rate", "reason"), [
    (12.0, 16.0, "below 16 Hz, the slowest any model takes; record at 16 Hz or faster"),
    (15.999, None, "below 16 Hz, the slowest any model takes; record at 32 Hz or faster"),
    (32.0, 64.0, "below the 64 Hz this model takes; record at 64 Hz or faster"),
])
def test_a_sensor_too_slow_even_for_upsampling_is_refused_with_the_fix(rate, min_rate, reason):
    track = ChannelTrack("m@1", Channel.PPG, 32.0, BAND, 4, min_sensor_rate=min_rate)
    with pytest.raises(StreamError, match=f"PPG at {rate:g} Hz cannot feed model m@1 "
                                          rf"\(32 Hz\): sensor rate {rate:g} Hz is {reason}$"):
        track.add(sensor_frames(np.zeros((100, 1)), rate)[0])


def test_a_band_beyond_the_sensors_nyquist_frequency_is_refused():
    with pytest.raises(ValueError, match=r"cannot carry the model's 0\.5-16 Hz band \(up to "
                                         r"10 Hz\); record at more than 32 Hz"):
        Conditioner(20.0, 64.0, (0.5, 16.0), 2, min_sensor_rate=16.0)


@pytest.fixture(scope="module")
def hr_model() -> Model:
    return load_model(MODELS / "hr.json")


def vitals(pipeline: DevicePipeline, data: bytes) -> list[dict]:
    return [m.payload for m in pipeline.feed(data) if m.topic.endswith("/vitals")]


def window_truth(recording, vital: dict) -> float:
    """True HR averaged over the 8 s window that ends at the estimate's device time."""
    end = round(vital["device_time_s"])
    return float(recording.truth.hr_bpm[end - 8 : end].mean())


@pytest.mark.parametrize(("ppg_rate", "acc_rate", "activity"), [
    (100.0, 32.0, "rest"), (117.0, 32.0, "rest"), (117.0, 50.0, "rest"), (117.0, 50.0, "walk"),
    (20.0, 20.0, "rest"), (25.0, 25.0, "rest")])  # slower than the model: upsampled
def test_the_hr_model_is_accurate_on_resampled_channels(hr_model, ppg_rate, acc_rate, activity):
    def run(ppg_rate: float, acc_rate: float) -> tuple[object, list[dict]]:
        hr = 72 if activity == "rest" else 110
        recording = simulate(Scenario.constant(hr, 60, activity), seed=3, ppg_rate=ppg_rate,
                             acc_rate=acc_rate)
        data = b"".join(encode_frame(frame) for _, frame in frames(recording))
        pipeline = DevicePipeline("wrist-1", [hr_model], AlarmsConfig(),
                                  Topics("wearable", "t"), strict=True)
        return recording, vitals(pipeline, data)

    recording, got = run(ppg_rate, acc_rate)
    assert len(got) >= 25  # a window every 2 s once the first 8 s are in
    assert {v["quality"] for v in got} == {"good"}
    if activity == "rest":  # under motion the model's own error dominates: compare below
        errors = [abs(v["value"] - window_truth(recording, v)) for v in got]
        assert max(errors) < 3.0, errors
    # The same beats and movement sampled at 64 / 32 Hz (integer ratios) give the same.
    _, native = run(64.0, 32.0)
    for a, b in zip(got, native, strict=False):
        assert a["device_time_s"] == b["device_time_s"]
        assert a["value"] == pytest.approx(b["value"], abs=1.0)
        assert a["motion_g"] == pytest.approx(b["motion_g"], rel=0.1, abs=2e-3)


@pytest.mark.parametrize("rate", [20.0, 25.0])
def test_a_slow_watch_reads_a_walk_like_a_fast_sensor(hr_model, rate):
    """PPG and accelerometer both at a watch's 20-25 Hz, upsampled to 32 Hz, under arm swing:
    as accurate as the same beats at 64/32 Hz. (Window by window the two differ by up to
    ~1 bpm: the simulated accelerometer is sampled without an anti-alias filter, so at 20 Hz
    the swing's harmonics above 10 Hz fold into the band.)"""
    def run(ppg_rate: float, acc_rate: float) -> tuple[np.ndarray, list[dict]]:
        recording = simulate(Scenario.constant(110, 60, "walk"), seed=3, ppg_rate=ppg_rate,
                             acc_rate=acc_rate)
        data = b"".join(encode_frame(frame) for _, frame in frames(recording))
        pipeline = DevicePipeline("wrist-1", [hr_model], AlarmsConfig(),
                                  Topics("wearable", "t"), strict=True)
        got = vitals(pipeline, data)
        errors = np.array([abs(v["value"] - window_truth(recording, v)) for v in got])
        return errors, got

    slow_errors, slow = run(rate, rate)
    fast_errors, fast = run(64.0, 32.0)
    assert len(slow) >= 25 and {v["quality"] for v in slow} == {"good"}
    assert np.median(slow_errors) <= np.median(fast_errors) + 0.5, (slow_errors, fast_errors)
    assert slow_errors.max() <= fast_errors.max() + 1.0
    for a, b in zip(slow, fast, strict=False):
        assert a["device_time_s"] == b["device_time_s"]
        assert a["value"] == pytest.approx(b["value"], abs=1.5)


def test_the_shipped_models_say_how_slow_a_sensor_they_take(hr_model):
    """HR upsamples from 16 Hz; BP times pulse arrival and keeps its own 64 Hz."""
    assert hr_model.manifest.min_sensor_rate_hz == 16.0
    assert load_model(MODELS / "bp.json").manifest.min_sensor_rate_hz == 64.0


def test_a_12_hz_ppg_is_rejected_by_the_pipeline_naming_both_rates(hr_model):
    recording = simulate(Scenario.constant(70, 12), seed=1, ppg_rate=12.0)
    data = b"".join(encode_frame(frame) for _, frame in frames(recording))
    pipeline = DevicePipeline("wrist-1", [hr_model], AlarmsConfig(), Topics("wearable", "t"),
                              strict=True)
    with pytest.raises(StreamError, match=r"12 Hz.*32 Hz.*below 16 Hz"):
        pipeline.feed(data)


def test_a_coarse_slow_accelerometer_at_rest_is_not_a_flat_line(hr_model):
    """A 20 Hz watch with an 8-bit accelerometer (16 mg steps): at rest its 5-sample frames
    often repeat one value on every axis. That is not a stuck sensor: every window stays
    good (one such frame used to mark a quarter of them motion_unknown, with no HR alarm).
    A stuck accelerometer, 16 identical samples and more, still marks its windows."""
    from wire import recordings

    rec = simulate(Scenario.constant(72, 60, "rest"), seed=2, ppg_rate=20.0, acc_rate=20.0)
    lsb = 1 / 64  # g
    coarse = np.round(rec.acc / lsb) * lsb
    stuck = coarse.copy()
    stuck[20 * 20 : 20 * 40] = stuck[20 * 20]  # 20 s stuck at one reading

    def qualities(acc: np.ndarray) -> list[str]:
        sig = recordings.Signals(rec.ppg, 20.0, acc, 20.0, None, 20.0, None, None,
                                 ("ppg", "acc"), 60.0)
        pipeline = DevicePipeline("wrist-1", [hr_model], AlarmsConfig(),
                                  Topics("wearable", "t"), strict=True)
        return [v["quality"] for v in vitals(pipeline, b"".join(
            d for _, d in recordings.stream(sig)))]

    assert any(_five_equal(coarse[i : i + 5]) for i in range(0, len(coarse), 5))
    assert set(qualities(coarse)) == {"good"}
    marked = qualities(stuck)
    assert marked.count("motion_unknown") >= 8 and marked[0] == "good"


def _five_equal(block: np.ndarray) -> bool:
    return bool((block == block[0]).all())
