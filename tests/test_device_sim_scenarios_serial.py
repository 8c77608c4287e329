"""Every shipped scenario, cut to 90 s, with all its channels (as `wearable-sim run` sends
them), through the real serial path (a pty read with pyserial) into wire.Decoder: the
decoder sees clean frames, or exactly what the scenario's scripted faults imply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pty_replay import through_pty

from device_sim import Fault, get_scenario, scenario_names, simulate
from device_sim.faults import in_windows, windows
from device_sim.physiology import Recording
from device_sim.stream import frames
from wire.protocol import Flag

DURATION_S = 90  # long scenarios (sleep, normal-day, the glucose ones) are cut the same way


def implied(rec: Recording) -> dict[str, int]:
    """The decoder counters the recording's faults imply, from the frames sent: a corrupted
    frame costs exactly itself; dropped (or unplugged) frames show as sequence gaps; a reboot
    is a BOOT frame after a channel's first."""
    corrupt = windows(rec.faults, "corrupt")
    counts = {"damaged": 0, "frames_lost": 0, "seq_gaps": 0, "device_resets": 0,
              "duplicates": 0}
    last: dict[object, int] = {}
    for t, frame in frames(rec, 3):
        if in_windows(t, corrupt):
            counts["damaged"] += 1
            continue
        prev = last.get(frame.channel)
        last[frame.channel] = frame.seq
        if prev is None:
            continue
        if frame.flags & Flag.BOOT:
            counts["device_resets"] += 1
        elif frame.seq != prev + 1:
            counts["seq_gaps"] += 1
            counts["frames_lost"] += frame.seq - prev - 1
    return counts


def check(scenario, tmp_path: Path) -> None:
    rec = simulate(scenario, 11)  # the scenario's own channels and faults, as `run` sends
    assert rec.channels == scenario.channels
    expected = implied(rec)
    if not scenario.faults:
        assert set(expected.values()) == {0}
    decoder, got, _ = through_pty(rec, tmp_path)
    stats = decoder.stats.as_dict()
    assert stats["crc_errors"] + stats["malformed"] == expected.pop("damaged"), stats
    for key, value in expected.items():
        assert stats[key] == value, (key, stats)
    sent = list(frames(rec, 3))
    assert len(got) == len(sent) - sum(in_windows(t, windows(rec.faults, "corrupt"))
                                       for t, _ in sent)
    assert {f.channel for f in got} == {f.channel for _, f in sent}


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_through_the_serial_path(tmp_path, name: str) -> None:
    check(get_scenario(name).with_duration(DURATION_S), tmp_path)


def test_scripted_faults_give_exactly_their_counts(tmp_path) -> None:
    # No shipped scenario scripts faults yet; one that does must pass the same check.
    faults = (Fault("drop", 10.0, 2.0), Fault("corrupt", 20.0, 1.5), Fault("reboot", 40.0, 3.0),
              Fault("disconnect", 60.0, 4.0))
    scenario = get_scenario("sleep").with_duration(DURATION_S)
    check(dataclasses.replace(scenario, faults=faults), tmp_path)
