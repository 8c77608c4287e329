"""Wearable device simulator: physiological signals, scenarios, wire-protocol stream, writers.

    from device_sim import simulate, stream
    recording = simulate("tachycardia", seed=1)
    for device_time_s, frame_bytes in stream(recording, device_id=7):
        ...
"""

from device_sim.errors import ScenarioError, SimulatorError, WriterError
from device_sim.physiology import Recording, Truth, simulate, synthesize
from device_sim.scenarios import (
    ACTIVITIES,
    Scenario,
    Segment,
    Trajectory,
    get_scenario,
    random_scenario,
    scenario_names,
)
from device_sim.stream import frames, stream

__all__ = [
    "ACTIVITIES",
    "Recording",
    "Scenario",
    "ScenarioError",
    "Segment",
    "SimulatorError",
    "Trajectory",
    "Truth",
    "WriterError",
    "frames",
    "get_scenario",
    "random_scenario",
    "scenario_names",
    "simulate",
    "stream",
    "synthesize",
]
