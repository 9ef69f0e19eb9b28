"""Dataflows, their configuration and the ``twinflow`` command line."""
