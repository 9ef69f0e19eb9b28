"""Every docstring example in the package runs, under the module's installed name.

pytest's ``--doctest-modules`` would import ``operators/registry.py`` as ``operators.registry``,
a second copy of ``twinflow.operators.registry``; walking the installed package avoids that.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

#: The subpackages of ``twinflow``; each maps to a folder of its own, so walk them one by one.
SUBPACKAGES = ("core", "flows", "connectors", "operators", "models")


def _modules() -> list[str]:
    names = ["twinflow"]
    for sub in SUBPACKAGES:
        package = importlib.import_module(f"twinflow.{sub}")
        names.append(package.__name__)
        names += [i.name for i in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    return sorted(names)


def _with_examples(name: str) -> bool:
    try:
        module = importlib.import_module(name)
    except ImportError:  # an optional extra that is not installed
        return False
    finder = doctest.DocTestFinder(exclude_empty=True)
    return any(t.examples for t in finder.find(module))


MODULES = [m for m in _modules() if _with_examples(m)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_examples_found() -> None:
    assert len(MODULES) >= 20, MODULES
