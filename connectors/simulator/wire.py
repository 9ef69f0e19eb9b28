"""Telemetry wire format v1: the JSON form of a telemetry frame.

One UTF-8 JSON object per message::

    {
      "twin_id": "wt-001",                      # str, a known twin
      "twin_type": "wind_turbine",              # str, a catalog type
      "times": [1767225600.0, 1767225601.0],    # epoch seconds (UTC), floats, non-decreasing
      "signals": {                              # signal name -> one value per time
        "wind_speed": [8.1, null],              # float, or null for no reading (NaN)
        "power_kw": [712.5, 715.0]
      }
    }

Every ``signals`` array has the length of ``times``; names are catalog signal names of the
type; values are JSON numbers or ``null`` (never strings, NaN or Infinity); floats are
written with full precision, so decoding gives back exactly the encoded frame. A message
larger than 1 MiB is invalid. Waveform frames are not sent in this format.

>>> import numpy as np
>>> from twinflow.core.records import TelemetryFrame
>>> f = TelemetryFrame("m-1", "motor", np.array([1.0, 2.0]), {"load_pct": np.array([80.0, np.nan])})
>>> encode_frame(f)
b'{"twin_id":"m-1","twin_type":"motor","times":[1.0,2.0],"signals":{"load_pct":[80.0,null]}}'
"""

from __future__ import annotations

import json
import math
from typing import Any

from twinflow.core.records import TelemetryFrame

#: Largest valid message, in bytes.
MAX_MESSAGE_BYTES = 1 << 20


def frame_to_wire(frame: TelemetryFrame) -> dict[str, Any]:
    """The v1 JSON object of a frame, as plain Python values (NaN becomes ``None``)."""
    return {
        "twin_id": frame.twin_id,
        "twin_type": frame.twin_type,
        "times": frame.times.tolist(),
        "signals": {
            name: [v if math.isfinite(v) else None for v in values.tolist()]
            for name, values in frame.signals.items()
        },
    }


def dumps(message: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, refusing NaN/Infinity (they are not JSON)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def encode_frame(frame: TelemetryFrame) -> bytes:
    """A telemetry frame as a wire-format-v1 payload."""
    return dumps(frame_to_wire(frame))
