"""Replay of the break-it passes: every attempt a hostile or careless user made, per area.

Each area module (``tests/break_it_<area>.py``) lists :class:`Attempt` objects. An attempt
does what the user did (a CLI call, a tampered file, a bad keyword) in a fresh folder and
checks that it was *handled cleanly*: one ``error:`` line and exit 2, or the right result,
and no stored data lost. It raises :class:`Mishandled` (or any exception) otherwise.

Run ``python tests/break_it.py`` for the table per area, ``-v`` for every attempt, or
``-k TEXT`` for the attempts whose name holds TEXT. ``tests/test_break_it.py`` runs the
same replay in CI and fails on any attempt not handled.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # area modules import the test fixtures by name
    sys.path.insert(0, str(HERE))

#: The area modules, in the order the table lists them.
AREAS: tuple[str, ...] = ("store", "follower", "resume", "env", "checkpoint_cli")


class Mishandled(AssertionError):
    """The code under test did not handle the attempt cleanly (the message says how)."""


@dataclass(frozen=True)
class Attempt:
    """One break-it attempt.

    Args:
        area: the table row it counts in (``store``, ``follower`` ...).
        item: the issue item it reproduces (issue 21's numbering), 0 for new attempts.
        name: what the user did, in a few words.
        run: does it in the fresh folder it is given; raises :class:`Mishandled` when the
            outcome is wrong.
    """

    area: str
    item: int
    name: str
    run: Callable[[Path], None]


@dataclass
class CliOutcome:
    """What one in-process CLI call gave: exit code and captured streams."""

    rc: int
    out: str
    err: str
    argv: list[str] = field(default_factory=list)

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def invoke(module: str, *argv: str) -> CliOutcome:
    """Run ``python -m <module> argv`` in this process, the way its console script does.

    Uses the module's ``main`` through :func:`gnn_market.cli.run_cli`, so expected failures
    become ``error:`` lines; a traceback (any other exception) is captured into ``err`` with
    rc 1, as the interpreter would print it.
    """
    from gnn_market.cli import run_cli

    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = run_cli(main, list(argv))
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - a traceback is the outcome we grade
                traceback.print_exc(file=err)
                rc = 1
    finally:
        root.removeHandler(handler)
    return CliOutcome(rc=rc, out=out.getvalue(), err=err.getvalue(), argv=[module, *argv])


def expect_error(outcome: CliOutcome, *needles: str) -> str:
    """Require exit 2 and exactly one ``error:`` line on stderr holding every ``needle``.

    Returns the line. Log lines (``INFO``/``WARNING ...``) before it are allowed; a traceback is not.
    """
    lines = outcome.error_lines()
    where = " ".join(outcome.argv)
    if "Traceback" in outcome.err:
        raise Mishandled(f"{where}: traceback: {outcome.err.strip().splitlines()[-1]}")
    errors = [line for line in lines if line.startswith("error:")]
    if outcome.rc != 2 or len(errors) != 1:
        raise Mishandled(f"{where}: rc {outcome.rc}, stderr {lines[-3:]!r}; want rc 2 and one error: line")
    others = [line for line in lines if not line.startswith(("error:", "INFO", "WARNING", "ERROR"))]
    if others:
        raise Mishandled(f"{where}: extra stderr lines beside the error: {others[:3]!r}")
    missing = [n for n in needles if n.lower() not in errors[0].lower()]
    if missing:
        raise Mishandled(f"{where}: error line {errors[0]!r} does not say {missing!r}")
    return errors[0]


def expect_ok(outcome: CliOutcome) -> CliOutcome:
    """Require exit 0 and no traceback."""
    if outcome.rc != 0 or "Traceback" in outcome.err:
        raise Mishandled(f"{' '.join(outcome.argv)}: rc {outcome.rc}, stderr tail "
                         f"{outcome.error_lines()[-3:]!r}")
    return outcome


def check(condition: bool, message: str) -> None:
    """:class:`Mishandled` with ``message`` unless ``condition``."""
    if not condition:
        raise Mishandled(message)


def expect_raises(exc_type: type[BaseException] | tuple[type[BaseException], ...], fn: Callable[[], object],
                  *needles: str) -> BaseException:
    """Require ``fn()`` to raise ``exc_type`` whose message holds every ``needle``."""
    try:
        fn()
    except exc_type as exc:
        text = str(exc).lower()
        missing = [n for n in needles if n.lower() not in text]
        if missing:
            raise Mishandled(f"{type(exc).__name__}({exc}) does not say {missing!r}") from exc
        return exc
    except Exception as exc:  # noqa: BLE001
        raise Mishandled(f"raised {type(exc).__name__}: {exc} (want {exc_type})") from exc
    raise Mishandled(f"no error (want {exc_type})")


_SHARED: dict[str, Path] = {}
_SHARED_ROOT: list[tempfile.TemporaryDirectory] = []


def shared(name: str, build: Callable[[Path], Path]) -> Path:
    """An expensive artefact (a store, a trained run) built once per replay and reused.

    ``build(folder)`` creates it inside an empty ``folder`` and returns its path. Attempts
    that change it must copy it first (``shutil.copytree``) into their own folder.
    """
    if name not in _SHARED:
        if not _SHARED_ROOT:
            _SHARED_ROOT.append(tempfile.TemporaryDirectory(prefix="break-it-shared-"))
        folder = Path(_SHARED_ROOT[0].name) / name
        folder.mkdir()
        _SHARED[name] = build(folder)
    return _SHARED[name]


# --------------------------------------------------------------------------- replay


@dataclass
class Result:
    attempt: Attempt
    handled: bool
    detail: str
    seconds: float


def all_attempts(areas: Sequence[str] = AREAS) -> list[Attempt]:
    attempts: list[Attempt] = []
    for area in areas:
        module = importlib.import_module(f"break_it_{area}")
        attempts.extend(module.ATTEMPTS)
    return attempts


def replay(attempts: Sequence[Attempt], verbose: bool = False) -> list[Result]:
    """Run every attempt in its own temporary folder; never stops at a failure."""
    results = []
    for attempt in attempts:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="break-it-") as tmp:
            try:
                attempt.run(Path(tmp))
                handled, detail = True, ""
            except Mishandled as exc:
                handled, detail = False, str(exc)
            except Exception as exc:  # noqa: BLE001 - an attempt that crashes is not handled
                handled, detail = False, f"{type(exc).__name__}: {exc}"
        result = Result(attempt, handled, detail, time.perf_counter() - started)
        results.append(result)
        if verbose:
            mark = "ok  " if handled else "FAIL"
            print(f"{mark} [{attempt.area} #{attempt.item}] {attempt.name} ({result.seconds:.1f} s)"
                  + (f"\n       {detail}" if detail else ""), flush=True)
    return results


def table(results: Sequence[Result]) -> str:
    """Per area: attempts, handled cleanly, not handled."""
    areas = list(dict.fromkeys(r.attempt.area for r in results))
    lines = [f"{'area':<16}{'attempts':>9}{'handled':>9}{'not':>6}", "-" * 40]
    for area in areas:
        rows = [r for r in results if r.attempt.area == area]
        ok = sum(r.handled for r in rows)
        lines.append(f"{area:<16}{len(rows):>9}{ok:>9}{len(rows) - ok:>6}")
    ok = sum(r.handled for r in results)
    lines += ["-" * 40, f"{'total':<16}{len(results):>9}{ok:>9}{len(results) - ok:>6}"]
    failed = [r for r in results if not r.handled]
    for r in failed:
        lines.append(f"NOT HANDLED [{r.attempt.area} #{r.attempt.item}] {r.attempt.name}: {r.detail}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay the break-it attempts and print a table per area.")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per attempt")
    parser.add_argument("-k", default=None, help="only attempts whose name holds this text")
    parser.add_argument("--area", action="append", choices=AREAS, help="only this area (repeatable)")
    args = parser.parse_args(argv)
    attempts = all_attempts(args.area or AREAS)
    if args.k:
        attempts = [a for a in attempts if args.k.lower() in a.name.lower()]
    results = replay(attempts, verbose=args.verbose)
    print(table(results))
    return 0 if all(r.handled for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
