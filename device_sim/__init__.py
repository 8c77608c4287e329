"""Wearable device simulator: physiological signals, scenarios, wire-protocol stream, writers.

    from device_sim import simulate, stream
    recording = simulate("tachycardia", seed=1)
    for device_time_s, frame_bytes in stream(recording, device_id=7):
        ...
"""

from device_sim.errors import ScenarioError, SimulatorError, WriterError
from device_sim.faults import FAULT_KINDS, Fault, parse_fault
from device_sim.physiology import Recording, Simulation, Truth, simulate, simulation, synthesize
from device_sim.recordings import RecordingError, load_recording
from device_sim.scenarios import (
    ACTIVITIES,
    CHANNELS,
    Event,
    Scenario,
    Segment,
    Trajectory,
    get_scenario,
    load_scenario,
    random_scenario,
    scenario_names,
)
from device_sim.stream import frames, stream

__all__ = [
    "ACTIVITIES",
    "CHANNELS",
    "FAULT_KINDS",
    "Event",
    "Fault",
    "Recording",
    "RecordingError",
    "Scenario",
    "ScenarioError",
    "Segment",
    "Simulation",
    "SimulatorError",
    "Trajectory",
    "Truth",
    "WriterError",
    "frames",
    "get_scenario",
    "load_recording",
    "load_scenario",
    "parse_fault",
    "random_scenario",
    "scenario_names",
    "simulate",
    "simulation",
    "stream",
    "synthesize",
]
