"""Every fault kind through the real serial path (a pty read with pyserial) into
wire.Decoder: the decoder's counters show exactly the faults injected, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from pty_replay import through_pty

from device_sim import ScenarioError, get_scenario, simulate
from device_sim.faults import FAULT_KINDS, Fault, parse_fault
from device_sim.physiology import PPG_AMBIENT
from device_sim.stream import frames
from wire.protocol import Channel, Decoder, Flag, Frame, encode_frame

SCENARIO = get_scenario("tachycardia").with_duration(40)
ALL = ("ppg", "acc", "ecg", "bp", "cgm")


def record(*faults: Fault, channels=ALL):
    return simulate(SCENARIO, 5, channels=channels, faults=faults)


def clean(decoder: Decoder, **expected: int) -> None:
    stats = decoder.stats.as_dict()
    for key in ("crc_errors", "malformed", "seq_gaps", "frames_lost", "duplicates",
                "device_resets"):
        assert stats[key] == expected.get(key, 0), (key, stats)


def test_no_fault_every_channel_arrives_clean(tmp_path) -> None:
    rec = record()
    decoder, got, paths = through_pty(rec, tmp_path)
    clean(decoder)
    assert len(paths) == 1
    assert {f.channel for f in got} == set(Channel)
    assert len(got) == len(list(frames(rec, 3)))


def test_dropped_frames_are_counted_lost(tmp_path) -> None:
    sent = len(list(frames(record(), 3)))
    rec = record(Fault("drop", 10.0, 2.0))
    n = sent - len(list(frames(rec, 3)))
    assert n >= 8
    decoder, got, _ = through_pty(rec, tmp_path)
    gaps = len({f.channel for _, f in frames(record(), 3) if 10 <= _ < 12})
    clean(decoder, frames_lost=n, seq_gaps=gaps)
    assert len(got) == sent - n


def test_corrupted_frames_cost_exactly_one_frame_each(tmp_path) -> None:
    rec = record(Fault("corrupt", 12.0, 1.5))
    items = list(frames(rec, 3))
    k = sum(1 for t, _ in items if 12.0 <= t < 13.5)
    decoder, got, _ = through_pty(rec, tmp_path)
    stats = decoder.stats
    assert stats.crc_errors + stats.malformed == k
    assert stats.frames_ok == len(items) - k and len(got) == len(items) - k
    assert stats.frames_lost == k and stats.device_resets == stats.duplicates == 0
    intact = [encode_frame(f) for t, f in items if not 12.0 <= t < 13.5]
    assert [encode_frame(f) for f in got] == intact  # every other frame recovered intact


def test_reboot_resets_sequence_and_clock(tmp_path) -> None:
    rec = record(Fault("reboot", 20.0, 3.0), channels=("ppg", "acc", "ecg"))
    decoder, got, _ = through_pty(rec, tmp_path)
    clean(decoder, device_resets=3)  # one per channel stream (PPG, ACCEL, ECG)
    ppg = [f for f in got if f.channel == Channel.PPG]
    boots = [i for i, f in enumerate(ppg) if f.flags & Flag.BOOT]
    assert boots[0] == 0 and len(boots) == 2
    after = ppg[boots[1]]
    assert after.seq == 0 and after.timestamp_us == 0  # the device clock restarted
    # Nothing was acquired while it booted: 3 s of samples are missing.
    assert sum(len(f.samples) for f in ppg) == (40 - 3) * 64


def test_drift_moves_the_device_clock_only(tmp_path) -> None:
    rec = record(Fault("drift", 0.0, ppm=5000))
    decoder, got, _ = through_pty(rec, tmp_path)
    clean(decoder)
    last = [f for f in got if f.channel == Channel.PPG][-1]
    true_s = (40 * 64 - len(last.samples)) / 64
    assert last.timestamp_us / 1e6 == pytest.approx(true_s * 1.005, abs=1e-5)


def test_disconnect_closes_and_reopens_the_pty(tmp_path) -> None:
    sent = len(list(frames(record(), 3)))
    rec = record(Fault("disconnect", 15.0, 4.0))
    lost = sent - len(list(frames(rec, 3)))
    decoder, got, paths = through_pty(rec, tmp_path)
    assert len(paths) == 2  # a second pty after the re-plug
    channels = len({f.channel for t, f in frames(record(), 3) if 15 <= t < 19})
    clean(decoder, frames_lost=lost, seq_gaps=channels)
    assert len(got) == sent - lost


@pytest.mark.parametrize("mode", ["flat", "saturated"])
def test_detached_sensor_is_flagged(tmp_path, mode: str) -> None:
    rec = record(Fault("detach", 10.0, 5.0, mode=mode), channels=("ppg", "acc"))
    decoder, got, _ = through_pty(rec, tmp_path)
    clean(decoder)
    flag = Flag.LEAD_OFF if mode == "flat" else Flag.SATURATED
    ppg = [f for f in got if f.channel == Channel.PPG]
    flagged = [f for f in ppg if f.flags & flag]
    assert len(flagged) == 5 * 4
    assert all(10e6 <= f.timestamp_us < 15e6 for f in flagged)
    values = np.concatenate([f.values[:, 0] for f in flagged])
    if mode == "flat":
        assert np.abs(values - PPG_AMBIENT).max() < 50
    else:
        assert (values == 2**31 - 1).all()


def test_ecg_lead_off_motion_and_cgm_gap(tmp_path) -> None:
    rec = simulate(get_scenario("hyperglycaemia").with_duration(3600), 2,
                   channels=("acc", "ecg", "cgm"),
                   faults=[Fault("lead_off", 100.0, 4.0), Fault("motion", 200.0, 5.0),
                           Fault("cgm_gap", 900.0, 1200.0)])
    decoder, got, _ = through_pty(rec, tmp_path)
    clean(decoder)
    ecg = [f for f in got if f.channel == Channel.ECG]
    def overlaps(f: Frame, a: float, b: float) -> bool:
        start = f.timestamp_us / 1e6
        return start < b and a < start + len(f.samples) / f.sample_rate_hz

    off = [f for f in ecg if f.flags & Flag.LEAD_OFF]
    assert off == [f for f in ecg if overlaps(f, 100.0, 104.0)]
    values = np.concatenate([f.values[:, 0] for f in ecg])
    assert np.all(values[100 * 250:104 * 250] == 0) and np.any(values[:100 * 250] != 0)
    acc = [f for f in got if f.channel == Channel.ACCEL]
    rms = [np.std(f.values, axis=0).mean() for f in acc]
    burst = [r for f, r in zip(acc, rms, strict=True) if 201e6 <= f.timestamp_us < 204e6]
    calm = [r for f, r in zip(acc, rms, strict=True) if f.timestamp_us < 100e6]
    assert min(burst) > 10 * max(calm)
    cgm = [f for f in got if f.channel == Channel.CGM]
    times = [f.timestamp_us / 1e6 for f in cgm]
    assert times == [t for t in range(0, 3600, 300) if not 900 <= t < 2100]
    assert [f.seq for f in cgm] == list(range(len(cgm)))  # no reading, no frame, no gap


def test_truth_lists_active_faults_per_second() -> None:
    rec = record(Fault("drop", 10.5, 1.0), Fault("reboot", 20.0))
    faults = rec.truth.faults
    assert faults[9] == [] and faults[10] == faults[11] == ["drop"] and faults[12] == []
    assert faults[20] == faults[21] == ["reboot"] and faults[22] == []
    row = next(r for r in rec.truth.rows() if r["t"] == 10)
    assert row["faults"] == ["drop"]


def test_fault_specs() -> None:
    assert parse_fault("detach@30:10,mode=saturated") == Fault("detach", 30, 10, "saturated")
    assert parse_fault("drift@0,ppm=-50").ppm == -50
    assert parse_fault("reboot@5").duration_s == FAULT_KINDS["reboot"][0]
    for bad in ("detach", "melt@3", "detach@x", "detach@3:-1", "drift@0,speed=3",
                "detach@1,mode=wet"):
        with pytest.raises(ScenarioError):
            parse_fault(bad)
