"""Next-hour class probabilities for every pair at the latest (or a given) hour.

    python -m gnn_market.predict                                  # bundled sample, packaged checkpoint
    python -m gnn_market.predict --store DIR --checkpoint runs/X/model.pt --time 2023-12-01T12:00
    python -m gnn_market.predict --format json
    python -m gnn_market.predict --start 2023-09-01 --end 2023-12-30T19:00 --out preds.parquet   # every hour, with embeddings

``--time`` names the hour t whose candle is the latest one used (its
``open_time``); the prediction is for the candle opening at t + 1h, i.e. for
the decision taken when candle t closes. Pairs without a valid candle at t
are listed with ``valid = false`` and no class; ``filled = true`` marks a pair
whose candle at t was forward-filled (it did not trade that hour: the price is
carried, so its row rests on a stand-in candle). Probabilities are the
checkpoint's calibrated ones and ``prediction`` is its decision rule's class
(``argmax_k w_k p_k``, weights chosen on validation macro-F1; plain argmax for a
checkpoint without calibration), so it need not be the most probable class.

``--out FILE`` writes the hour (or, with ``--start``/``--end``, every hour of the
range) to a file instead of printing it: ``.parquet`` or ``.csv`` (one row per
hour and pair, with the embedding columns ``emb_0 ..`` unless ``--no-embeddings``)
or ``.npz`` (the arrays); see :mod:`gnn_market.export`.

``--follow --out DIR`` (a folder: a name without suffix) keeps running: every
``--interval`` seconds it appends each newly stored hour's predictions and
embeddings to DIR, a month-partitioned Parquet dataset (``DIR/month=YYYY-MM/``,
columns ``hour``, ``symbol``, the probabilities, ``emb_*`` and ``model``, the
checkpoint's SHA-256 prefix) that DuckDB, Polars, Spark and ``pyarrow.dataset``
read as one table; an hour is never written twice, history is never rewritten
(complete months are compacted into one file each) and hours missed while it
was stopped are filled in on restart. ``--out FILE.parquet|FILE.csv`` appends
to one file instead, rewritten whole every hour (fine for days, slow for
years). ``--iterations N`` stops after N polls (``--once``: one). See
:mod:`gnn_market.follow` and :mod:`gnn_market.prediction_dataset`.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .cli import DefaultsHelpFormatter, OneLineParser, parse_symbols, program_name, run_cli
from .encoded import EncodedRange
from .errors import DataError
from .export import SUFFIXES, save_encoded
from .follow import FollowConfig, follow
from .sources import open_store
from .timeutil import parse_utc

FORMATS = ("table", "json", "csv")


def prediction_frame(encoded: EncodedRange) -> pd.DataFrame:
    """One row per pair: calibrated probabilities, decided class, validity (hour T-1 of ``encoded``)."""
    last = replace(encoded, times=encoded.times[-1:], probs=encoded.probs[-1:],
                   embeddings=encoded.embeddings[-1:], mask=encoded.mask[-1:],
                   filled=None if encoded.filled is None else encoded.filled[-1:])
    return last.to_frame(embeddings=False).drop(columns="time")


def render(frame: pd.DataFrame, time: pd.Timestamp, fmt: str) -> str:
    target = time + pd.Timedelta(hours=1)
    if fmt == "json":
        rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                for r in frame.to_dict(orient="records")]
        for r in rows:
            for key in ("p_down", "p_sideways", "p_up"):
                r[key] = round(float(r[key]), 6)
            r["valid"] = bool(r["valid"])
            r["filled"] = None if r["filled"] is pd.NA else bool(r["filled"])
        return json.dumps({"time": time.isoformat(), "predicted_candle": target.isoformat(),
                           "pairs": rows}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        out = frame.assign(time=time.isoformat(), predicted_candle=target.isoformat())
        out.to_csv(buf, index=False, float_format="%.6f", quoting=csv.QUOTE_MINIMAL)
        return buf.getvalue().rstrip("\n")
    lines = [f"latest hour {time.isoformat()} -> predicting the candle opening {target.isoformat()}",
             f"{'symbol':<14}{'P(DOWN)':>9}{'P(SIDE)':>9}{'P(UP)':>9}  prediction"]
    for r in frame.itertuples():
        filled = r.filled is not pd.NA and bool(r.filled)
        cls = (r.prediction + (" (filled candle)" if filled else "")) if r.valid else "(no data)"
        lines.append(f"{r.symbol:<14}{r.p_down:>9.3f}{r.p_sideways:>9.3f}{r.p_up:>9.3f}  {cls}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=program_name("gnn_market.predict"), description=__doc__,
                                formatter_class=DefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store", help="market store folder (default: the bundled sample)")
    src.add_argument("--data", choices=("sample", "synthetic"), default="sample")
    p.add_argument("--checkpoint", help="model.pt from python -m gnn_market.train (default: packaged)")
    p.add_argument("--time", help="latest hour to use (ISO, UTC; default: the last hour in the data)")
    p.add_argument("--start", help="with --out: first hour of a range to export (ISO, UTC)")
    p.add_argument("--end", help="with --out: last hour of a range to export (ISO, UTC; default: the last)")
    p.add_argument("--out", help=f"write to this file instead of printing ({', '.join(SUFFIXES)}); with --follow: a "
                                 f"folder (no suffix) or a .parquet/.csv file")
    p.add_argument("--no-embeddings", action="store_true", help="leave embedding columns out of --out tables")
    p.add_argument("--symbols", help="comma-separated symbols (default: all in the store)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    live = p.add_argument_group("live predictions (--follow)")
    live.add_argument("--follow", action="store_true",
                      help="keep appending each newly stored hour to --out: a folder (month-partitioned dataset, "
                           "for long runs) or a .parquet/.csv file (rewritten each hour); --start: first hour of a "
                           "new output (default: the latest stored hour)")
    live.add_argument("--interval", type=float, default=60.0, help="seconds between polls of the store")
    live.add_argument("--iterations", type=int, help="stop after this many polls (default: run until Ctrl-C)")
    live.add_argument("--once", action="store_true", help="one poll, then exit (= --iterations 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoint import require_device  # torch loads here, after the flags are parsed
    from .encoder import GraphEncoder

    require_device(args.device, "--device")  # before the checkpoint: torch would call it corrupt
    if args.follow or args.once or args.iterations is not None:
        return _follow(args)
    ranged = args.start is not None or args.end is not None
    if ranged and args.time is not None:
        raise DataError("--time names one hour; use either it or --start/--end")
    if ranged and args.out is None:
        raise DataError("--start/--end export a range of hours: give --out FILE (.parquet, .csv or .npz)")
    encoder = GraphEncoder.load(args.checkpoint, device=args.device)
    store = open_store(args.store, args.data)
    kwargs = {}
    symbols = parse_symbols(args.symbols)
    if symbols:
        kwargs["symbols"] = symbols
    if ranged:
        encoded = encoder.encode_range(store, start=args.start, end=args.end, progress=None, **kwargs)
    else:
        encoded = encoder.encode(store, time=args.time, **kwargs)
    if args.out is not None:
        path = save_encoded(encoded, args.out, embeddings=not args.no_embeddings)
        n_times, n_pairs = encoded.mask.shape
        print(f"wrote {n_times} hour(s) x {n_pairs} pairs ({encoded.times[0].isoformat()} .. "
              f"{encoded.times[-1].isoformat()}) to {path}")
        return 0
    print(render(prediction_frame(encoded), encoded.times[-1], args.format))
    return 0


def _follow(args: argparse.Namespace) -> int:
    """``--follow``: the live loop of :mod:`gnn_market.follow`."""
    if not args.follow:
        raise DataError("--once and --iterations apply to --follow")
    if args.out is None:
        raise DataError("--follow appends to a dataset folder or a file: give --out DIR (no suffix), or --out "
                        "FILE (.parquet or .csv)")
    if args.time is not None or args.end is not None:
        raise DataError("--follow writes every new hour as it is stored: --time and --end do not apply")
    if args.once and args.iterations is not None:
        raise DataError("give either --once or --iterations")
    config = FollowConfig(out=Path(args.out).expanduser(), symbols=parse_symbols(args.symbols),
                          start=parse_utc(args.start, "start"), interval_s=args.interval,
                          iterations=1 if args.once else args.iterations, embeddings=not args.no_embeddings)
    config.validate()  # before loading the checkpoint
    from .encoder import GraphEncoder  # torch: after every check

    encoder = GraphEncoder.load(args.checkpoint, device=args.device)
    hours = follow(encoder, open_store(args.store, args.data), config)
    print(f"wrote {len(hours)} new hour(s) to {config.out}")
    return 0


def cli() -> int:
    """Console-script entry point ``cryptograph-predict``."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
