"""Data CLI: ``python -m gnn_market.data {backfill,collect,import-vision,import-csv,info,repair,migrate}``.

* ``backfill``: universe + hourly klines + funding history + one book snapshot
  per symbol. Resumable: only hours outside the stored range are fetched.
* ``collect``: the live hourly job. ``--book-lead`` seconds (default 30)
  before each hour closes it takes a top-20 book snapshot of every symbol,
  stamped with its true capture time (so the panel's row for the closing
  hour can use it: :data:`gnn_market.panel.BOOK_TOLERANCE`); ``--delay``
  seconds after the hour it appends the closed candle and the current funding
  rate. ``--once``: one cycle (candles, book, funding) at the time it is run.
  Binance serves no order-book history, so this is how book history comes to
  exist. Without ``--once`` a failed pass (outage, errors left after retries)
  is logged with its count in a row and the next try's UTC time, and tried
  again at the next one; until one cycle has worked a configuration error (HTTP
  4xx, unknown symbol, nothing to collect) stops the job with exit 2; an IP ban
  (418) or a store error stops it at any time (docs/data.md).
* ``import-vision``: Binance public-archive zips/CSVs (``gnn_market.vision``).
* ``import-csv``: a folder of per-symbol ``<SYMBOL>.csv[.gz]`` candle dumps with a
  header (``gnn_market.csv_import``), e.g. the three-year Binance spot set.
* ``info``: per market: symbols, time range, rows, gaps, funding and book
  coverage, and every stored file that breaks a store rule.
* ``repair``: fix the files ``info`` reports (``Store.repair``; ``--dry-run``
  only says what it would do). Originals are kept under ``repair-backup/``.
* ``migrate``: convert a store of the one-file-per-symbol layout (formats 1-2) to
  month files (format 3, ``gnn_market.migrate``); every reader and writer refuses
  the old layout with one line naming this command.

``backfill`` and ``collect`` download on ``--workers`` threads and parse and write
in one helper process per core (:mod:`gnn_market.refresh_pipeline`; a pass of
fewer than 16 symbols writes in its threads); :func:`refresh_reference` is the
previous all-in-one-process path, kept as the reference the tests compare with.

Module map: this module is the light half of the CLI (the parser, ``main``, the
dispatch), so ``--help`` imports no python-binance, pyarrow or store code. The commands
(the Binance client they build, the ``collect`` loop) live in :mod:`gnn_market.data_commands`,
imported after the arguments are parsed. What fills a store from any data source lives in
:mod:`gnn_market.source_sync` (through the :class:`~gnn_market.market_source.MarketSource`
Protocol); ``info``/``repair``/``migrate`` in :mod:`gnn_market.data_maintenance`.
Their public names stay importable from here (PEP 562 ``__getattr__``).

Errors a user can cause (argument errors included) end as one ``error: ...``
line on stderr, exit 2; arguments and inputs are checked before the store is
created or written. Every write is an idempotent upsert, so nothing stored is
lost or duplicated.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Any, Sequence

from . import data_defaults  # plain numbers: not panel's BOOK_TOLERANCE nor vision's MAX_MEMBER_BYTES
from .binance.config import ClientConfig
from .cli import DefaultsHelpFormatter, OneLineParser, parse_symbols, program_name, run_cli
from .errors import DataError


# --------------------------------------------------------------------------- parser
def _number(kind: str, low: float, low_open: bool = True):
    """An argparse type: a finite float above ``low`` (``low_open``) or at least ``low``; NaN and inf refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (low_open and value == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind} (expected a finite number {bound})")
        return value

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


_positive = _number("positive number", 0.0)
_non_negative = _number("non-negative number", 0.0, low_open=False)


def _add_network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--market", choices=["spot", "perp", "both"], default="spot",
                   help="spot pairs, USDT-M perpetuals, or both")
    p.add_argument("--top", type=int, default=None, help="keep the N most traded pairs")
    p.add_argument("--min-quote-volume", type=_non_negative, default=None, help="24 h quote volume floor (USDT)")
    # parsed (checked, repeats refused) with the other arguments: before the universe is fetched
    p.add_argument("--symbols", type=parse_symbols, default=None,
                   help="comma-separated symbols instead of the ranked universe (each once)")
    p.add_argument("--spot-url", default=ClientConfig.spot_url, help="spot host root")
    p.add_argument("--futures-url", default=ClientConfig.futures_url, help="USDT-M futures host root")
    p.add_argument("--timeout", type=_positive, default=ClientConfig.timeout, help="seconds per request (finite, > 0)")
    p.add_argument("--retries", type=int, default=ClientConfig.max_retries, help="retries per request")
    p.add_argument("--workers", type=int, default=ClientConfig.max_workers, help="concurrent requests")


#: ``collect --help``: the schedule and what happens when a pass fails (see :func:`stops_collect`).
COLLECT_DESCRIPTION = """\
The live hourly job. --book-lead seconds before each hour closes it takes a top-20
book snapshot of every symbol; --delay seconds after the hour it appends every closed
candle not yet stored and the funding rate. It works on the symbols the store holds
(an empty store gets the universe), or on exactly --symbols when given (a symbol new
to the store starts with --hours of history). --once: one cycle now, then exit.

When a pass fails, the job logs one ERROR line per failed pass: what failed, how many
passes of that kind failed in a row, and the next try (UTC, on the server's clock;
the local one while the server is unreachable):
  ERROR ...: collect cycle failed (3 in a row, a network outage or server error):
  spot klines BTCUSDT: cannot reach ... (timeout) after 6 attempts; next try at
  2024-03-01 14:00:15 UTC
and logs when it works again; the hours it missed are fetched then.
 - Outages are ridden out, from the first cycle on: timeouts, refused connections,
   host names that do not resolve (a machine without network sees the same),
   HTTP 5xx and 429 left after --retries.
 - Until one cycle has worked, any other error stops the job with one error line and
   exit 2: a host that answers but is not the Binance API (HTTP 4xx), an unknown
   --symbols entry, no symbol left by --top/--min-quote-volume. A URL that is not
   http(s)://host[:port] and an unwritable store are refused before any request.
 - An IP ban (418) or a store that cannot be written stops it at any time (exit 2).
"""


def build_parser() -> argparse.ArgumentParser:
    """The data CLI: one subcommand per job, each with its description and every default shown."""
    parser = OneLineParser(prog=program_name("gnn_market.data"), formatter_class=DefaultsHelpFormatter,
                           description="Download, collect, import, inspect, repair and migrate market stores. "
                           "Each subcommand has its own --help.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=description or text, formatter_class=DefaultsHelpFormatter)

    p = command("backfill", "download history into a store (resumable: only missing hours are fetched)")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--hours", type=int, default=24 * 365, help="history length in hours (8760 = one year)")
    _add_network(p)
    p = command("collect", "hourly live job: book before the close, then candle + funding",
                COLLECT_DESCRIPTION)
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--once", action="store_true", help="run one cycle (candles, book, funding) now and exit")
    p.add_argument("--hours", type=int, default=24, help="history for symbols with nothing stored")
    p.add_argument("--delay", type=_non_negative, default=15.0, help="seconds after the hour (late candles)")
    p.add_argument("--book-lead", type=_positive, default=30.0,
                   help=f"seconds before the hour for the book snapshots (at most "
                        f"{data_defaults.BOOK_TOLERANCE_S:.0f}, the panel's window)")
    p.add_argument("--predict", metavar="CHECKPOINT", default=None,
                   help="after each cycle, run this model.pt on every newly stored complete hour (as predict "
                        "--follow does) and append the predictions to --predictions")
    p.add_argument("--predictions", metavar="DIR", default=None,
                   help="with --predict: the predictions folder, a month-partitioned Parquet dataset "
                        "(DIR/month=YYYY-MM/*.parquet), continued where it ends")
    _add_network(p)
    p = command("import-vision", "import Binance public-archive zips/CSVs (data.binance.vision)")
    p.add_argument("paths", nargs="+", help="archive files or folders of them")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--market", choices=["spot", "perp"], default=None,
                   help="market of files whose path does not say (must agree with a path that does)")
    p.add_argument("--symbol", default=None, help="symbol of files whose name does not say")
    p.add_argument("--max-member-mb", type=_positive, default=data_defaults.MAX_MEMBER_BYTES / 2 ** 20,
                   help="largest file / uncompressed zip member read, MiB")
    p = command("import-csv", "import a folder of <SYMBOL>.csv[.gz] hourly candle files")
    p.add_argument("folder", help="folder of <SYMBOL>.csv or <SYMBOL>.csv.gz files with a header")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--market", choices=["spot", "perp"], default="spot", help="market the candles belong to")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: every file)")
    p.add_argument("--keep-last", action="store_true",
                   help="keep each file's last row (by default dropped: dumps usually end in a partial hour)")
    p = command("info", "describe a store and list files that break its rules")
    p.add_argument("--store", default=None, help="store folder (default: the bundled sample)")
    p = command("repair", "fix stored files that break the store rules (originals backed up)")
    p.add_argument("--store", required=True, help="store folder")
    p.add_argument("--dry-run", action="store_true", help="only say what would be dropped")
    p = command("migrate", "convert a store of the one-file-per-symbol layout (formats 1-2) to month files "
                           "(format 3); resumable, verifies every row before removing the old files")
    p.add_argument("--store", required=True, help="store folder in the old layout")
    p.add_argument("--keep-backup", action="store_true",
                   help="keep the old files in DIR/migrate-backup-<time>/ after verification (default: delete them)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, check what argparse cannot, and run the subcommand (its exit code)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version: argparse printed and exits
        return int(exc.code or 0)
    for name in ("top", "workers", "retries"):
        if getattr(args, name, None) is not None and getattr(args, name) < (1 if name != "retries" else 0):
            raise DataError(f"--{name} must be {'positive' if name != 'retries' else '>= 0'}")
    if getattr(args, "symbol", None) is not None:
        args.symbol = args.symbol.strip().upper()
    return _run(args)


#: Subcommand -> its function in :mod:`gnn_market.data_commands`.
COMMANDS = {"backfill": "cmd_backfill", "collect": "cmd_collect", "import-vision": "cmd_import_vision",
            "import-csv": "cmd_import_csv", "info": "cmd_info", "repair": "cmd_repair", "migrate": "cmd_migrate"}


def _run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand. Its module (python-binance, pyarrow, the store) loads only now."""
    from . import data_commands

    func = getattr(data_commands, COMMANDS[args.command])
    if args.command == "collect":  # looked up at each call: a test may replace _wait while the loop runs
        return int(func(args, sleep=lambda seconds: _wait(seconds)) or 0)
    return int(func(args) or 0)


def _wait(seconds: float) -> None:
    """The collect loop's only sleep (tests replace it; the client's retry back-off has its own)."""
    time.sleep(seconds)


def __getattr__(name: str) -> Any:
    """Every public name of :mod:`gnn_market.data_commands` (``refresh_reference``, ``stops_collect``,
    ``cmd_backfill``, ``BOOK_TOLERANCE``, ...) stays importable from here; it loads that module on use."""
    if name.startswith("__"):  # import machinery and introspection probes: never worth the heavy import
        raise AttributeError(f"module 'gnn_market.data' has no attribute {name!r}")
    from . import data_commands

    try:
        return getattr(data_commands, name)
    except AttributeError:
        raise AttributeError(f"module 'gnn_market.data' has no attribute {name!r}") from None


def cli() -> int:
    """Console-script entry point ``cryptograph-data``."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
