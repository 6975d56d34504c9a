"""Mutation testing of the core stages with mutmut 3, one module at a time; prints a score table.

Usage (from the project root; mutmut is a development tool, not a test dependency)::

    .venv/bin/python -m pip install "mutmut>=3.8,<4"
    nice -n 10 .venv/bin/python scripts/mutation.py                 # every module below
    nice -n 10 .venv/bin/python scripts/mutation.py water/coarse water/prompts  # some of them
    .venv/bin/python scripts/mutation.py --survivors water/coarse   # then read the survivors

Each module runs in its own scratch copy under ``build/mutation/<module>/`` (git ignores
``build/``): the project's ``samgeo_pipeline/``, ``tests/`` and ``pyproject.toml``, whose
``[tool.mutmut]`` section is rewritten there so that mutmut mutates that one module and collects
only that module's fast tests (``TESTS`` below). mutmut then runs, for each mutant, the tests
that execute the mutated function. The copy is made anew on each run, so a score always reflects
the current code and tests. ``--survivors`` prints the diff of each surviving mutant of the last
run (``mutmut show``). The table is also written to ``build/mutation/scores.json``; the exit
status is 1 when a module scores under 80 %.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"

# module -> its fast tests (the tests that exercise it directly, seconds each): pytest arguments.
# Under mutmut's trampolines every call of a mutated function costs much more: the vectorize tests
# with the smallest windows (tens of thousands of union-find calls) take ~40 s there, and are left
# out; the other window sizes still cover the same code.
_SLOW_VECTORIZE = [
    "tests/outputs/test_polygon_trace.py::TestPolygonRules::test_same_polygons_for_any_window_size",
    "tests/outputs/test_polygon_trace.py::TestPolygonRules::test_count_is_4_connected_components[8]",
]
TESTS: dict[str, list[str]] = {
    "water/radiometry": ["tests/water/test_radiometry.py"],
    "water/coarse": ["tests/water/test_coarse.py", "tests/water/test_spectral_tests.py"],
    "water/rule": ["tests/water/test_rule.py", "tests/water/test_coarse.py"],
    "water/index_rule": ["tests/water/test_index_rule.py", "tests/water/test_coarse.py", "tests/water/test_spectral_tests.py"],
    "water/rgb_rule": ["tests/water/test_rgb_rule.py", "tests/water/test_coarse.py"],
    "water/spectral_tests": ["tests/water/test_spectral_tests.py"],
    "water/prompts": ["tests/water/test_prompts.py"],
    "outputs/vectorize": [
        "tests/outputs/test_vectorize.py", "tests/outputs/test_polygon_trace.py", *(f"--deselect={t}" for t in _SLOW_VECTORIZE)
    ],
    "io/raster": ["tests/io/test_raster.py", "tests/water/test_radiometry.py"],  # the latter: decimated reads
    "io/tiling": ["tests/io/test_tiling.py"],
    "outputs/writers": ["tests/outputs/test_writers.py", "tests/outputs/test_writers_output.py", "tests/io/test_atomic.py"],
    "io/bands": ["tests/io/test_bands.py"],
    "sam/geometry": ["tests/sam/test_geometry.py", "tests/sam/test_pixels.py", "tests/sam/test_parity.py"],
}

# module -> mutmut settings of its own. Thread pools (torch's; the writer's background thread and
# GDAL's) do not survive a fork: forked from a process that has run the tests, their mutants hang
# until their timeout (and would count as killed); a fork server that has only collected the
# tests forks cleanly.
_FORKSERVER = {"process_isolation": "forkserver"}
OPTIONS: dict[str, dict[str, object]] = {"sam/geometry": _FORKSERVER, "outputs/writers": _FORKSERVER}

# mutmut exit codes (mutmut.stats.status_by_exit_code) -> the table's columns.
KILLED = {1, 3, 24, -24, 36, 152, 255}  # test failure, pytest error, timeout
SURVIVED = {0}
NO_TESTS = {5, 33}


def mutmut_section(module: str, base: dict) -> str:
    """The ``[tool.mutmut]`` TOML for one module: the project's settings, narrowed to it."""
    settings = base | OPTIONS.get(module, {}) | {
        "source_paths": ["samgeo_pipeline"],
        "only_mutate": [f"samgeo_pipeline/{module}.py"],
        "pytest_add_cli_args_test_selection": TESTS[module],
    }
    lines = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def prepare(module: str) -> Path:
    """A fresh copy of the project for ``module`` under :data:`WORK`; returns its folder."""
    folder = WORK / module
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("samgeo_pipeline", "tests"):
        shutil.copytree(ROOT / name, folder / name, ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text()
    base = tomllib.loads(text).get("tool", {}).get("mutmut", {})
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    (folder / "pyproject.toml").write_text(text.rstrip() + "\n\n" + mutmut_section(module, base))
    return folder


def mutmut(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``mutmut ARGS`` in ``folder`` with this Python, output captured."""
    command = [sys.executable, "-m", "mutmut", *args]
    return subprocess.run(command, cwd=folder, text=True, capture_output=True, check=False)


def exit_codes(folder: Path, module: str) -> dict[str, int | None]:
    """Mutant name -> mutmut's exit code, from the run's ``.meta`` file."""
    meta = folder / "mutants" / "samgeo_pipeline" / f"{module}.py.meta"
    if not meta.is_file():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def score(module: str, jobs: int) -> dict:
    """Run mutmut on ``module``; one table row."""
    folder = prepare(module)
    start = time.monotonic()
    done = mutmut(folder, "run", "--max-children", str(jobs))
    minutes = (time.monotonic() - start) / 60
    codes = exit_codes(folder, module)
    if done.returncode != 0 or not codes:
        tail = (done.stdout + done.stderr)[-2000:]
        sys.exit(f"mutmut failed on {module} (exit {done.returncode}); see {folder}:\n{tail}")
    counts = Counter(
        "killed" if c in KILLED else "survived" if c in SURVIVED else "no tests" if c in NO_TESTS else "other"
        for c in codes.values()
    )
    tested = counts["killed"] + counts["survived"] + counts["no tests"]  # a mutant no test runs is not killed
    return {
        "module": module,
        "mutants": len(codes),
        "killed": counts["killed"],
        "survived": counts["survived"],
        "no tests": counts["no tests"],
        "other": counts["other"],
        "score": 100.0 * counts["killed"] / tested if tested else 0.0,
        "minutes": minutes,
    }


def print_table(rows: list[dict]) -> None:
    print(f"{'module':<22}{'mutants':>8}{'killed':>8}{'survived':>9}{'no tests':>9}{'other':>6}{'score':>8}{'minutes':>8}")
    for r in rows:
        print(
            f"{r['module']:<22}{r['mutants']:>8}{r['killed']:>8}{r['survived']:>9}{r['no tests']:>9}"
            f"{r['other']:>6}{r['score']:>7.1f}%{r['minutes']:>8.1f}"
        )


SHOW = """
import sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
path, names = sys.argv[1], sys.argv[2:]
for name in names:
    print(f"# {name}")
    print(get_diff_for_mutant(name, path=path))
"""


def print_survivors(module: str) -> None:
    """The diff of each surviving mutant of the last run of ``module`` (``mutmut show``, in one process)."""
    folder = WORK / module
    names = sorted(name for name, code in exit_codes(folder, module).items() if code in SURVIVED)
    if names:
        command = [sys.executable, "-c", SHOW, f"samgeo_pipeline/{module}.py", *names]
        subprocess.run(command, cwd=folder, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: all of {', '.join(TESTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--survivors", action="store_true", help="show the last run's survivors, run nothing")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - set(TESTS)
    if unknown:
        parser.error(f"unknown module(s) {', '.join(sorted(unknown))}; choose from {', '.join(TESTS)}")
    args.modules = args.modules or list(TESTS)
    if importlib.util.find_spec("mutmut") is None:
        parser.error(f'mutmut is not installed: {sys.executable} -m pip install "mutmut>=3.8,<4"')
    if args.survivors:
        for module in args.modules:
            print_survivors(module)
        return 0
    rows = []
    for module in args.modules:
        rows.append(score(module, args.jobs))
        print_table(rows[-1:])
    print()
    print_table(rows)
    (WORK / "scores.json").write_text(json.dumps(rows, indent=1))
    return 0 if all(r["score"] >= 80.0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
