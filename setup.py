"""Packaging: the design card's top-level folders install as subpackages of ``twinflow``.

``flows/`` becomes ``twinflow.flows``, ``connectors/`` ``twinflow.connectors`` and so on (the
mapping is ``[tool.setuptools.package-dir]`` in pyproject.toml); this file only lists every
subpackage under each folder, which pyproject.toml cannot do for remapped folders.
"""

from setuptools import find_packages, setup

FOLDERS = ("flows", "connectors", "operators", "models")


def packages() -> list[str]:
    """``twinflow``, its core, each folder as ``twinflow.<folder>`` and everything below."""
    found = ["twinflow", *(f"twinflow.{p}" for p in find_packages("twinflow"))]
    for folder in FOLDERS:
        found += [f"twinflow.{folder}", *(f"twinflow.{folder}.{p}" for p in find_packages(folder))]
    return [*found, "twinflow.migrations"]


setup(packages=packages())
