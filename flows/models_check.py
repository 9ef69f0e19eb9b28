"""``twinflow models check``: DTDL files and twin-type profiles checked together.

Every problem is printed on its own line, then a one-line summary; the exit status is 0 when
all are valid and 1 otherwise (a missing path raises :class:`ConfigError`, exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twinflow.operators.dtdl import ModelSet


def check_models(paths: list[Path]) -> int:
    """``models check``: every problem on its own line, then a summary; 1 if any problem."""
    from twinflow.core.errors import ConfigError
    from twinflow.operators.dtdl import DtdlError, find_model_files, parse_files

    files = find_model_files(paths)  # ConfigError (exit 2) for a missing path
    if not files:
        raise ConfigError("no *.json model files in " + ", ".join(str(p) for p in paths))
    try:
        models = parse_files(files)
    except DtdlError as exc:
        for problem in exc.problems:
            print(problem)
        bad = len({p.file for p in exc.problems})
        print(
            f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} in {bad} of "
            f"{len(files)} file{'s' if len(files) != 1 else ''}: the models are invalid"
        )
        return 1
    print(
        f"{len(files)} file{'s' if len(files) != 1 else ''}, {len(models)} "
        f"interface{'s' if len(models) != 1 else ''}: all valid"
    )
    return check_profiles(paths, models)


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
