"""``twinflow models check``: DTDL files and twin-type profiles checked together.

Every problem is printed on its own line, then a one-line summary (files, Interfaces, DTDL
elements and the time taken); the exit status is 0 when all are valid and 1 otherwise (a
missing path raises :class:`ConfigError`, exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twinflow.operators.dtdl import ModelSet


def check_models(paths: list[Path]) -> int:
    """``models check``: every problem on its own line, then a summary; 1 if any problem."""
    from twinflow.core.errors import ConfigError
    from twinflow.operators.dtdl import find_model_files
    from twinflow.operators.dtdl.parser import check

    files = find_model_files(paths)  # ConfigError (exit 2) for a missing path
    if not files:
        raise ConfigError("no *.json model files in " + ", ".join(str(p) for p in paths))
    found = check(files)
    read = f"{_count(found.elements, 'element')} checked in {found.seconds:.3f} s"
    if found.problems:
        for problem in found.problems:
            print(problem)
        bad = len({p.file for p in found.problems})
        print(
            f"{_count(len(found.problems), 'problem')} in {bad} of {_count(found.files, 'file')}"
            f": the models are invalid ({_count(len(found.models), 'interface')}, {read})"
        )
        return 1
    print(
        f"{_count(found.files, 'file')}, {_count(len(found.models), 'interface')}: all valid "
        f"({read})"
    )
    return check_profiles(paths, found.models)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def check_profiles(paths: list[Path], models: ModelSet) -> int:
    """The twin-type profiles (``*.yaml``) among ``paths``, each read and joined with its DTDL
    Interface: one line per problem and 1 if any, else one line naming the types."""
    from twinflow.core.errors import ConfigError
    from twinflow.operators.catalog import build_types
    from twinflow.operators.profile import find_profiles, read_profile

    found = [
        f
        for p in map(Path, paths)
        for f in (find_profiles(p) if p.is_dir() else [p] if p.suffix in (".yaml", ".yml") else [])
    ]
    if not found:
        return 0
    problems: list[str] = []
    profiles = []
    for f in found:
        try:
            profiles.append(read_profile(f))
        except ConfigError as exc:
            problems.append(str(exc))
    if not problems:
        try:
            types = build_types(models, profiles)
        except ConfigError as exc:
            problems.append(str(exc))
    n = f"{len(found)} profile{'s' if len(found) != 1 else ''}"
    if problems:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {n}: invalid")
        return 1
    print(f"{n}, twin types {', '.join(sorted(t.name for t in types))}: all valid")
    return 0
