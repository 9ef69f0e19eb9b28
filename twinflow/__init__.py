"""twinflow: streaming digital twins as declarative Bytewax dataflows.

One import root. The design card's folders install beneath it: ``twinflow.flows`` (dataflows,
deployment loader, CLI), ``twinflow.connectors`` (protocols, storage, the simulated plant),
``twinflow.operators`` (per-twin stream logic), ``twinflow.models`` (analytic models), and
``twinflow.core`` at the bottom (records, errors, time helpers, the configuration mechanism,
retry pacing, optional imports), which imports nothing above it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twinflow")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
