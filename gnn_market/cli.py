"""Shared command-line plumbing: one clear error line, non-zero exit."""
from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
from typing import Callable, Sequence

from .errors import CryptoGraphError, DataError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and turn expected failures into one line on stderr.

    ``CryptoGraphError`` -> ``error: <message>`` and exit 2; Ctrl-C -> exit 130;
    anything else is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(main(argv) or 0)
    except CryptoGraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors become the CLI's one ``error: ...`` line (exit 2), not a usage dump.

    The error is raised as :class:`DataError` for :func:`run_cli` to print, like every other
    user error; ``--help`` still prints and exits 0. Sub-parsers inherit the class.
    """

    def error(self, message: str):  # type: ignore[override]
        raise DataError(f"{self.prog}: {message} (see --help)")


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every valued option's default in ``--help``."""

    def _format_action(self, action: argparse.Action) -> str:
        valued = (action.option_strings and (action.nargs != 0 or isinstance(action, argparse.BooleanOptionalAction))
                  and action.default not in (None, argparse.SUPPRESS))
        if valued and "%(default)" not in (action.help or ""):
            action = copy.copy(action)  # the parser's own action keeps its help text
            action.help = f"{action.help or ''} (default: %(default)s)".strip()
        return super()._format_action(action)


#: The console scripts of setup.cfg, by module: usage lines show the name the user ran.
SCRIPTS = {"gnn_market.train": "cryptograph-train", "gnn_market.data": "cryptograph-data",
           "gnn_market.predict": "cryptograph-predict"}


def program_name(module: str, argv0: str | None = None) -> str:
    """``cryptograph-train`` when run as that console script, else ``python -m gnn_market.train``."""
    script = SCRIPTS.get(module)
    ran = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return script if script is not None and ran == script else f"python -m {module}"


def parse_symbols(text: str | None) -> list[str] | None:
    """``--symbols "btcusdt, ETHUSDT"`` -> ``["BTCUSDT", "ETHUSDT"]``; None or "" -> None (all symbols).

    A list that holds only commas is an error, and so is a symbol that is not ``^[A-Z0-9]{2,30}$``
    or one given twice (``BTCUSDT,btcusdt`` too): refused, never silently de-duplicated.
    """
    from .store_schema import unique_symbols, validate_symbol  # here: store_schema imports pandas, --help must not

    if not text:
        return None
    syms = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not syms:
        raise DataError("--symbols is empty")
    return unique_symbols([validate_symbol(s) for s in syms], "--symbols")
