"""What-if requests from outside the flow and their answers (``whatif_result.v1``).

A :class:`WhatIfRequest` asks for a what-if (the same scenario document as a what-if file)
of one twin, run forward from the twin's state in the live flow. Its answer is a
:class:`WhatIfResult`: ``done`` with the report, ``rejected`` with the reason (a malformed
request or scenario, naming the field; a refused signature or grant; ``busy`` when the
what-if workers' queue is full; expired) or ``failed`` (the run itself raised). The result
id derives from the request id alone, so a replayed request has the same result id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from twinflow.core.records import deterministic_id
from twinflow.core.times import iso
from twinflow.operators.whatif.scenario import WhatIf

#: The pseudo-command a grant names to let an issuer ask what-ifs (``commands: [whatif]``).
WHATIF = "whatif"
#: Result statuses.
DONE, REJECTED, FAILED = "done", "rejected", "failed"
#: The reason of a request refused because the workers' queue is full.
BUSY = "busy"


def result_id_for(request_id: str) -> str:
    """The deterministic id of a request's result (the same on every replay)."""
    return deterministic_id("whatif-result", request_id)


@dataclass(frozen=True)
class WhatIfRequest:
    """A checked what-if request for ``twin_id`` (``name`` is what grants match)."""

    request_id: str
    twin_id: str
    twin_type: str
    whatif: WhatIf
    issued_at: datetime
    expires_at: datetime
    name: str = WHATIF


@dataclass(frozen=True)
class WhatIfResult:
    """The answer to a what-if request; ``report`` is the what-if report when ``done``."""

    SCHEMA: ClassVar[str] = "twinflow.whatif_result"
    VERSION: ClassVar[int] = 1

    request_id: str
    twin_id: str
    twin_type: str | None
    status: str
    requested_at: datetime
    reason: str | None = None
    report: dict[str, Any] | None = None

    @classmethod
    def rejected(cls, request: WhatIfRequest, reason: str) -> WhatIfResult:
        return cls(
            request.request_id,
            request.twin_id,
            request.twin_type,
            REJECTED,
            request.issued_at,
            reason,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "version": self.VERSION,
            "result_id": result_id_for(self.request_id),
            "request_id": self.request_id,
            "twin_id": self.twin_id,
            "twin_type": self.twin_type,
            "status": self.status,
            "reason": self.reason,
            "requested_at": iso(self.requested_at),
            "report": self.report,
        }


__all__ = [
    "BUSY",
    "DONE",
    "FAILED",
    "REJECTED",
    "WHATIF",
    "WhatIfRequest",
    "WhatIfResult",
    "result_id_for",
]
