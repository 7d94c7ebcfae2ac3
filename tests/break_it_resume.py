"""Break-it attempts: resume (see tests/break_it.py).

``python -m gnn_market.train --resume`` as a careless or hostile user drives it: parts edited,
copied under another seed's name, left from another market or an older version, a full disk.
One tiny trained run with its part is built once (:func:`trained_run`); each attempt copies it.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from break_it import Attempt, check, expect_error, expect_ok, invoke, shared
from train_fixtures import TINY_MARKET, tiny_store

PART = "seed0_fold1.pt"


def _flags(store: Path, out: Path, *extra: str) -> list[str]:
    """A tiny run with parts: one epoch, hidden 8, the GNN only."""
    return ["--store", str(store), "--out", str(out), "--epochs", "1", "--hidden", "8", "--heads", "2",
            "--lookback", "4", "--no-ablation", "--no-baselines", "--threads", "1", "--no-progress",
            "--resume", *extra]


def _train(store: Path, out: Path, *extra: str):
    return invoke("gnn_market.train", *_flags(store, out, *extra))


def _build_run(folder: Path) -> Path:
    """A tiny store and one finished run on it with its part: ``folder/run`` (store in ``folder``)."""
    store = tiny_store(folder)
    expect_ok(_train(store.root, folder / "run"))
    (folder / "store-path").write_text(str(store.root))
    return folder / "run"


def trained_run() -> tuple[Path, Path]:
    """(store, run folder) of the shared tiny run (built once per replay)."""
    run = shared("resume-run", _build_run)
    return Path((run.parent / "store-path").read_text()), run


def _copy_parts(tmp: Path) -> tuple[Path, Path, Path]:
    """(store, out, part): the shared run's parts copied into ``tmp/run`` (no metrics, no model.pt)."""
    store, run = trained_run()
    out = tmp / "run"
    shutil.copytree(run / "parts", out / "parts")
    return store, out, out / "parts" / PART


def _no_artefacts(out: Path) -> None:
    check(not (out / "model.pt").exists() and not (out / "metrics.json").exists(),
          f"a refused resume wrote artefacts into {out}")


def tampered(change: Callable[[dict[str, Any]], Any], *needles: str) -> Callable[[Path], None]:
    """An attempt: edit the part in place with ``change`` (its return value is ignored), then ``--resume``."""
    def run(tmp: Path) -> None:
        store, out, part = _copy_parts(tmp)
        raw = torch.load(part, weights_only=True)
        change(raw)
        torch.save(raw, part)
        expect_error(_train(store, out), PART, "delete it", "without --resume", *needles)
        _no_artefacts(out)
    return run


def _nan_weights(raw: dict[str, Any], every: bool) -> None:
    for value in raw["model_state"].values():
        if value.is_floating_point():
            value.view(-1)[0] = float("nan")
            if every:
                value.fill_(float("nan"))
            else:
                return


def copied_under_another_seed(tmp: Path) -> None:
    store, out, part = _copy_parts(tmp)
    shutil.copy(part, part.with_name("seed1_fold1.pt"))
    expect_error(_train(store, out, "--seeds", "0", "1"), "seed1_fold1.pt", "holds seed 0 fold 1")
    _no_artefacts(out)


def intact_copy_resumes(tmp: Path) -> None:
    """The control: an untouched part is re-used (nothing trained) and gives the same metrics."""
    store, out, _ = _copy_parts(tmp)
    outcome = expect_ok(_train(store, out))
    _, run = trained_run()
    want = json.loads((run / "metrics.json").read_text())["test"]["gnn"]["macro_f1"]
    got = json.loads((out / "metrics.json").read_text())["test"]["gnn"]["macro_f1"]
    check(abs(got - want) < 1e-12, f"resumed macro-F1 {got} != {want}")
    check("edge features" not in outcome.err, "an intact part was retrained")


def store_rewritten(hours: int, needle: str) -> Callable[[Path], None]:
    """Issue 22 / item 18: the store at the same path now holds another market (or grew), then ``--resume``."""
    def run(tmp: Path) -> None:
        from gnn_market.synthetic import write_synthetic_store

        path = tmp / "store"
        write_synthetic_store(path, TINY_MARKET)
        expect_ok(_train(path, tmp / "run"))
        shutil.rmtree(path)
        write_synthetic_store(path, replace(TINY_MARKET, seed=TINY_MARKET.seed + 1, hours=hours))
        expect_error(_train(path, tmp / "run"), PART, needle)
    return run


def full_disk(tmp: Path) -> None:
    """Item 16: the disk fills while the first part is written; the run must leave nothing behind."""
    import gnn_market.training.resume as resume_module
    from gnn_market.atomic import atomic_path
    from gnn_market.errors import StoreError

    real = resume_module.write_bytes_atomic

    def no_space(path: Path, data: bytes, error: type[Exception] = StoreError) -> None:
        with atomic_path(path, error):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store, _ = trained_run()
    resume_module.write_bytes_atomic = no_space
    try:
        outcome = _train(store, tmp / "new")
    finally:
        resume_module.write_bytes_atomic = real
    expect_error(outcome, "no space left on device", PART)
    check(not (tmp / "new").exists(), f"the failed run left {sorted(p.name for p in (tmp / 'new').rglob('*'))}")


def full_disk_at_metrics(tmp: Path) -> None:
    """Item 16: a plain run (no --resume) whose disk fills after model.pt: no half run may stay behind."""
    import gnn_market.training.run as run_module
    from gnn_market.atomic import atomic_path
    from gnn_market.errors import StoreError

    real = run_module.write_text_atomic

    def no_space_for_metrics(path: Path, text: str, error: type[Exception] = StoreError) -> Path:
        if Path(path).name != "metrics.json":
            return real(path, text, error)
        with atomic_path(path, error):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store, _ = trained_run()
    flags = [f for f in _flags(store, tmp / "new") if f != "--resume"]
    run_module.write_text_atomic = no_space_for_metrics
    try:
        outcome = invoke("gnn_market.train", *flags)
    finally:
        run_module.write_text_atomic = real
    expect_error(outcome, "no space left on device", "metrics.json")
    check(not (tmp / "new").exists(), f"the failed run left {sorted(p.name for p in (tmp / 'new').rglob('*'))}")


def _nan_normaliser(raw: dict[str, Any]) -> None:
    raw["normalizer"]["mean"][0] = float("nan")


def _short_y_test(raw: dict[str, Any]) -> None:
    raw["y_test"] = raw["y_test"][:-3]


def _hidden_16(raw: dict[str, Any]) -> None:
    raw["model_config"]["hidden"] = 16


def _version(raw: dict[str, Any]) -> None:
    raw["version"] = 3


ATTEMPTS: list[Attempt] = [
    Attempt("resume", 4, "part with one NaN weight", tampered(lambda raw: _nan_weights(raw, False), "non-finite")),
    Attempt("resume", 4, "part with all weights NaN", tampered(lambda raw: _nan_weights(raw, True), "non-finite")),
    Attempt("resume", 4, "part with a NaN normaliser", tampered(_nan_normaliser, "normaliser", "non-finite")),
    Attempt("resume", 4, "part with zeroed labels", tampered(lambda raw: raw["y_test"].zero_(), "y_test differs")),
    Attempt("resume", 4, "part copied under another seed's name", copied_under_another_seed),
    Attempt("resume", 4, "part with NaN predictions",
            tampered(lambda raw: raw["test"]["gnn"][1].fill_(float("nan")), "non-finite probabilities")),
    Attempt("resume", 4, "part without its key", tampered(lambda raw: raw.pop("key"), "'key' is missing")),
    Attempt("resume", 4, "part without histories",
            tampered(lambda raw: raw.pop("histories"), "'histories' is missing")),
    Attempt("resume", 4, "part with a short y_test", tampered(_short_y_test, "y_test")),
    Attempt("resume", 4, "part claiming another hidden size", tampered(_hidden_16, "hidden (16, not 8)")),
    Attempt("resume", 4, "untouched part copied to another folder resumes", intact_copy_resumes),
    Attempt("resume", 4, "store rewritten with another market, same path and hours",
            store_rewritten(TINY_MARKET.hours, "other market data")),
    Attempt("resume", 18, "store grew (no --end) under finished parts",
            store_rewritten(TINY_MARKET.hours + 24, "other fold hours")),
    Attempt("resume", 18, "part of the previous format (version 3)", tampered(_version, "part format 3")),
    Attempt("resume", 16, "train --resume onto a full disk", full_disk),
    Attempt("resume", 16, "train onto a disk that fills at metrics.json", full_disk_at_metrics),
]
