"""wearable-edge: the on-device runtime (serial ingest, filtering, int8 inference, alarms, MQTT).

Data flow: ingest (wire frames) -> estimate (signal + features + model) -> alarm -> publish.
"""
