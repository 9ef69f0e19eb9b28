"""The bottom of twinflow: records that cross stages, the exception root, time helpers.

Everything may import from here; nothing here imports from the rest of twinflow.
"""
