"""Recorded data as a telemetry source: CSV and Parquet files read in batches into frames.

``spec`` holds the ``replay:`` description (layout, time column and zone, column mapping),
``times`` parses time columns to epoch seconds, ``reader`` turns a file's batches into
:class:`~twinflow.core.records.TelemetryFrame` items and dead letters, and ``source`` is the
Bytewax source whose latest event time is the replay's reference clock.
"""
