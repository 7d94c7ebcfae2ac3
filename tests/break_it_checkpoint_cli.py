"""Break-it attempts: checkpoint_cli (see tests/break_it.py).

Tampered checkpoints given to ``predict`` (a copy of the packaged one), argument errors of
``predict``/``train``/``backfill``, and the endless ``collect`` job against an unreachable or
wrong host (the local fake server; the loop's wait is replaced so that it stops).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from break_it import Attempt, CliOutcome, Mishandled, check, expect_error, invoke
from fake_binance import FakeBinance, FakeSymbol

AREA = "checkpoint_cli"
NOW = 1_709_294_430_000  # 2024-03-01 12:00:30 UTC, the fake server's clock
NO_HOST = "http://127.0.0.1:9"  # nothing listens there: connection refused, an outage


# --------------------------------------------------------------------------- tampered checkpoints
def _packaged() -> dict:
    from gnn_market.checkpoint import PACKAGED_CHECKPOINT

    return torch.load(PACKAGED_CHECKPOINT, weights_only=True)


def _tampered(tmp: Path, change: Callable[[dict], None]) -> Path:
    """A copy of the packaged checkpoint with ``change`` applied to its payload."""
    raw = copy.deepcopy(_packaged())
    change(raw)
    path = tmp / "model.pt"
    torch.save(raw, path)
    return path


def _first(raw: dict) -> str:
    return sorted(raw["state_dict"])[0]


def _predict_refuses(change: Callable[[dict], None], *needles: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        path = _tampered(tmp, change)
        expect_error(invoke("gnn_market.predict", "--checkpoint", str(path)), str(path), *needles)
    return run


def _int64(raw: dict) -> None:
    raw["state_dict"] = {k: (v * 1000).long() for k, v in raw["state_dict"].items()}


def _wrong_shape(raw: dict) -> None:
    raw["state_dict"][_first(raw)] = torch.zeros(7, 3)


def _pickled_object(tmp: Path) -> None:
    path = tmp / "model.pt"
    torch.save(logging.getLogger("some.object"), path)  # any picklable object that is not a tensor
    expect_error(invoke("gnn_market.predict", "--checkpoint", str(path)), str(path), "pickled Python objects")


def _plain_pickle(tmp: Path) -> None:
    path = tmp / "model.pt"
    path.write_bytes(pickle.dumps({"format": "cryptograph-gatv2"}, protocol=4))  # torch warned first
    expect_error(invoke("gnn_market.predict", "--checkpoint", str(path)), "pickled Python objects")


def _torchscript(tmp: Path) -> None:
    path = tmp / "model.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    expect_error(invoke("gnn_market.predict", "--checkpoint", str(path)), "TorchScript")


@contextlib.contextmanager
def _no_cuda() -> Iterator[None]:
    """This machine as one without CUDA (the attempt was made on a CPU-only box)."""
    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: False
    try:
        yield
    finally:
        torch.cuda.is_available = real


def _cuda_without_cuda(tmp: Path) -> None:
    with _no_cuda():
        line = expect_error(invoke("gnn_market.predict", "--device", "cuda"), "--device cuda", "CUDA is not available")
    check("corrupt" not in line, f"the checkpoint is blamed: {line!r}")


# --------------------------------------------------------------------------- argument errors
def _usage_error(module: str, *argv: str, needle: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        expect_error(invoke(module, *argv, "--out", str(tmp / "out")), f"python -m {module}", needle)
        check(not (tmp / "out").exists(), "an output was created")
    return run


def _symbols() -> list[FakeSymbol]:
    return [FakeSymbol(f"{b}USDT", b, quote_volume=v, listed_hours=300)
            for b, v in (("BTC", 9e9), ("ETH", 5e9), ("SOL", 1e9))]


def _net(server: FakeBinance | None, url: str | None = None) -> list[str]:
    url = url or (server.url if server else NO_HOST)
    return ["--spot-url", url, "--futures-url", url, "--retries", "0", "--timeout", "2"]


def _repeated_backfill_symbols(tmp: Path) -> None:
    with FakeBinance(_symbols(), now_ms=NOW) as server:
        expect_error(invoke("gnn_market.data", "backfill", "--store", str(tmp / "s"), "--symbols", "BTCUSDT,btcusdt",
                            *_net(server)), "BTCUSDT more than once")
        check(server.count() == 0, f"{server.count()} request(s) sent before the refusal")
    check(not (tmp / "s").exists(), "a store folder was created")


# --------------------------------------------------------------------------- the collect loop
class _Stopped(Exception):
    """Raised from the replaced wait: the job was still running."""


@contextlib.contextmanager
def _loop(stop_after: int) -> Iterator[list[str]]:
    """The collect loop's wait replaced (stops it at the ``stop_after``-th wait); yields its log lines."""
    import gnn_market.data as data_cli

    lines: list[str] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= stop_after:
            raise _Stopped

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.getMessage()}")

    handler, logger, real_wait = Keep(logging.INFO), logging.getLogger("gnn_market.data"), data_cli._wait
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    data_cli._wait = wait
    try:
        yield lines
    finally:
        data_cli._wait = real_wait
        logger.removeHandler(handler)
        logger.setLevel(level)


def _collect(*argv: str, stop_after: int) -> tuple[CliOutcome, list[str]]:
    with _loop(stop_after) as lines:
        outcome = invoke("gnn_market.data", "collect", *argv)
    return outcome, lines


def _collect_rides_out_an_outage(tmp: Path) -> None:
    outcome, lines = _collect("--store", str(tmp / "data"), *_net(None), stop_after=3)
    check(outcome.rc == 1 and "_Stopped" in outcome.err, f"the job ended: rc {outcome.rc}, {outcome.error_lines()[-1:]}")
    failed = [line for line in lines if line.startswith("ERROR collect cycle failed")]
    check(len(failed) == 2, f"want one ERROR line per failed cycle (2), got {failed!r}")
    for n, line in enumerate(failed, start=1):
        for words in (f"({n} in a row", "cannot reach http://127.0.0.1:9", "; next try at ", " UTC"):
            check(words in line, f"the failure line does not say {words!r}: {line!r}")


def _collect_stops_on(argv_for: Callable[[FakeBinance, Path], list[str]], *needles: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        with FakeBinance(_symbols(), now_ms=NOW) as server:
            outcome, _ = _collect("--store", str(tmp / "data"), *argv_for(server, tmp), stop_after=1)
        if "_Stopped" in outcome.err:
            raise Mishandled("the first cycle failed on configuration and the job went on waiting")
        expect_error(outcome, *needles)
        check(not (tmp / "data").exists(), "a store folder was created")
    return run


ATTEMPTS: list[Attempt] = [
    Attempt(AREA, 11, "predict with a checkpoint whose weights are int64",
            _predict_refuses(_int64, "int64, not floating point")),
    Attempt(AREA, 16, "predict with a checkpoint holding an extra weight",
            _predict_refuses(lambda r: r["state_dict"].__setitem__("x", torch.zeros(3)), "unexpected parameter 'x'")),
    Attempt(AREA, 16, "predict with a checkpoint missing a weight",
            _predict_refuses(lambda r: r["state_dict"].pop("context.bias"), "missing parameter 'context.bias'")),
    Attempt(AREA, 16, "predict with a checkpoint whose weight has another shape",
            _predict_refuses(_wrong_shape, "has shape [7, 3], the model expects")),
    Attempt(AREA, 16, "predict with a checkpoint whose config says lookback=0",
            _predict_refuses(lambda r: r["model_config"].__setitem__("lookback", 0), "unexpected parameter 'temporal.")),
    Attempt(AREA, 16, "predict with a checkpoint whose config says lookback=-1",
            _predict_refuses(lambda r: r["model_config"].__setitem__("lookback", -1), "lookback must be >= 0")),
    Attempt(AREA, 16, "predict with torch.save of an arbitrary object", _pickled_object),
    Attempt(AREA, 16, "predict with a plain pickle (torch warned before the error)", _plain_pickle),
    Attempt(AREA, 16, "predict with a TorchScript file (torch warned before the error)", _torchscript),
    Attempt(AREA, 16, "predict --device cuda on a machine without CUDA", _cuda_without_cuda),
    Attempt(AREA, 16, "predict with an unknown flag", _usage_error("gnn_market.predict", "--bogus",
                                                                  needle="unrecognized arguments: --bogus")),
    Attempt(AREA, 16, "predict --format xml", _usage_error("gnn_market.predict", "--format", "xml",
                                                           needle="invalid choice: 'xml'")),
    Attempt(AREA, 16, "train with an unknown flag", _usage_error("gnn_market.train", "--bogus",
                                                                needle="unrecognized arguments: --bogus")),
    Attempt(AREA, 16, "train --epochs many", _usage_error("gnn_market.train", "--epochs", "many",
                                                          needle="invalid int value")),
    Attempt(AREA, 16, "backfill --symbols BTCUSDT,btcusdt", _repeated_backfill_symbols),
    Attempt(AREA, 17, "collect (the README's live form) with the API unreachable", _collect_rides_out_an_outage),
    Attempt(AREA, 17, "collect --symbols with a symbol the exchange does not list",
            _collect_stops_on(lambda s, t: ["--symbols", "NOPEUSDT", *_net(s)], "unknown symbol(s) NOPEUSDT")),
    Attempt(AREA, 17, "collect against a host that is not the Binance API",
            _collect_stops_on(lambda s, t: _net(s, f"{s.url}/wrong-path"), "HTTP 404")),
    Attempt(AREA, 17, "collect --spot-url without a scheme",
            _collect_stops_on(lambda s, t: _net(s, "api.binance.com"), "bad spot URL")),
    Attempt(AREA, 17, "collect with --min-quote-volume above every pair",
            _collect_stops_on(lambda s, t: ["--min-quote-volume", "1e15", *_net(s)], "empty result")),
]
