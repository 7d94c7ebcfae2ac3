"""Next-hour class probabilities for every pair at the latest (or a given) hour.

    python -m gnn_market.predict                                  # bundled sample, packaged checkpoint
    python -m gnn_market.predict --store DIR --checkpoint runs/X/model.pt --time 2023-12-01T12:00
    python -m gnn_market.predict --format json

``--time`` names the hour t whose candle is the latest one used (its
``open_time``); the prediction is for the candle opening at t + 1h, i.e. for
the decision taken when candle t closes. Pairs without a valid candle at t
are listed with ``valid = false`` and no class.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Sequence

import numpy as np
import pandas as pd

from .cli import run_cli
from .encoder import EncodedRange, GraphEncoder
from .metrics import CLASS_NAMES
from .sources import open_store

FORMATS = ("table", "json", "csv")


def prediction_frame(encoded: EncodedRange) -> pd.DataFrame:
    """One row per pair: probabilities, predicted class, validity (hour T-1 of ``encoded``)."""
    probs, mask = encoded.probs[-1], encoded.mask[-1]
    frame = pd.DataFrame({
        "symbol": encoded.symbols,
        "p_down": probs[:, 0], "p_sideways": probs[:, 1], "p_up": probs[:, 2],
        "prediction": [CLASS_NAMES[int(k)] if ok else None for k, ok in zip(probs.argmax(1), mask)],
        "valid": mask,
    })
    return frame


def render(frame: pd.DataFrame, time: pd.Timestamp, fmt: str) -> str:
    target = time + pd.Timedelta(hours=1)
    if fmt == "json":
        rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                for r in frame.to_dict(orient="records")]
        for r in rows:
            for key in ("p_down", "p_sideways", "p_up"):
                r[key] = round(float(r[key]), 6)
            r["valid"] = bool(r["valid"])
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
        cls = r.prediction if r.valid else "(no data)"
        lines.append(f"{r.symbol:<14}{r.p_down:>9.3f}{r.p_sideways:>9.3f}{r.p_up:>9.3f}  {cls}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gnn_market.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store", help="market store folder (default: the bundled sample)")
    src.add_argument("--data", choices=("sample", "synthetic"), default="sample")
    p.add_argument("--checkpoint", help="model.pt from python -m gnn_market.train (default: packaged)")
    p.add_argument("--time", help="latest hour to use (ISO, UTC; default: the last hour in the data)")
    p.add_argument("--symbols", help="comma-separated symbols (default: all in the store)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    encoder = GraphEncoder.load(args.checkpoint, device=args.device)
    store = open_store(args.store, args.data)
    kwargs = {}
    if args.symbols:
        kwargs["symbols"] = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    encoded = encoder.encode(store, time=args.time, **kwargs)
    print(render(prediction_frame(encoded), encoded.times[-1], args.format))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
