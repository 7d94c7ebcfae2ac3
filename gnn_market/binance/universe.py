"""Which Binance symbols are in the universe, how they rank, and how spot and perp names pair up.

* Spot: ``TRADING`` USDT pairs minus stablecoin/fiat/gold bases
  (:data:`STABLE_BASES`, exact base matches) and leveraged tokens
  (``LEVERAGED`` permission, or a :data:`LEVERAGED_SUFFIXES` name whose
  remainder is itself a listed base).
* Perps: ``TRADING`` USDT-M ``PERPETUAL`` contracts minus index contracts
  (:data:`INDEX_PERPS`) and stablecoin bases.
* Symbols that are not ``^[A-Z0-9]{2,30}$`` are skipped with a warning and
  listed in :attr:`Universe.skipped`.
* Ranking is by 24 h quote volume; ``min_quote_volume`` and then ``top`` apply
  per market (:func:`build_universe`).
* :func:`map_perp_base` pairs a perp with its spot twin (``1000SHIBUSDT`` <->
  ``SHIBUSDT``, multiplier 1000).

Pure rules: the answers (exchangeInfo, 24 h tickers) come from callables, so
this module never talks to the network itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from ..store_schema import is_valid_symbol
from .parsers import to_float

log = logging.getLogger(__name__)

#: The two markets: spot (``/api/v3``) and USDT-M perpetual futures (``/fapi/v1``).
SPOT, PERP = "spot", "perp"

#: Base assets that are stablecoins, fiat or pegged to gold: a USDT pair on
#: them carries no market signal. Compiled from the reference (§6.6); exact
#: base-asset matches only (never substrings).
STABLE_BASES: frozenset[str] = frozenset(
    "USDT USDC FDUSD TUSD BUSD USDP PAX DAI USDS USDSB USD1 RLUSD XUSD AUSD SUSD USDN CUSD "
    "CUSDT VAI UST USTC U AEUR EURI EURT PAXG AXG "
    "EUR GBP AUD BRL TRY ARS BIDR IDRT JPY PLN RON RUB UAH ZAR NGN".split()
)
#: Perpetuals that are indexes, not coins (no spot counterpart, no own market).
INDEX_PERPS: frozenset[str] = frozenset({"BTCDOMUSDT", "DEFIUSDT", "USDCUSDT"})
#: Leveraged-token suffixes; a base is leveraged only if base minus suffix is
#: itself a listed base (so JUP or SUPER are kept).
LEVERAGED_SUFFIXES = ("UP", "DOWN", "BULL", "BEAR")
#: Multiplier prefixes of perpetual base assets (1000SHIB = 1000 SHIB).
PERP_MULTIPLIERS: dict[str, int] = {"1000000": 1_000_000, "1000": 1000, "1M": 1_000_000}
#: Known perp <-> spot renames that no string rule finds (perp base -> spot base).
PERP_BASE_OVERRIDES: dict[str, str] = {"LUNA2": "LUNA"}


@dataclass
class Universe:
    """Tradable USDT pairs, best first by 24 h quote volume.

    ``spot_to_perp``/``perp_to_spot`` map names of the same asset across
    markets (``SHIBUSDT`` <-> ``1000SHIBUSDT``, with ``multiplier`` 1000).
    ``skipped`` lists (symbol, reason) for excluded symbols worth reporting.
    """

    spot: list[str] = field(default_factory=list)
    perp: list[str] = field(default_factory=list)
    quote_volume: dict[tuple[str, str], float] = field(default_factory=dict)
    spot_to_perp: dict[str, str] = field(default_factory=dict)
    perp_to_spot: dict[str, str] = field(default_factory=dict)
    multiplier: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def symbols(self, market: str) -> list[str]:
        return list(self.spot if market == SPOT else self.perp)


def build_universe(exchange_info: Callable[[str], dict], tickers: Callable[[str], list[dict]],
                   market: str = "both", top: int | None = None,
                   min_quote_volume: float | None = None) -> Universe:
    """Tradable USDT pairs ranked by 24 h quote volume (see module docs for rules).

    ``exchange_info(market)`` and ``tickers(market)`` fetch the answers (in
    that order: spot exchangeInfo, perp exchangeInfo when perps are asked
    for, then the tickers of each market asked for). Spot exchangeInfo is
    always fetched: its base assets drive the leveraged-token rule and the
    perp -> spot mapping.
    """
    uni = Universe()
    spot_info = exchange_info(SPOT)
    spot_ok, spot_bases = _spot_candidates(spot_info, uni.skipped)
    perp_ok: dict[str, str] = {}
    if market in (PERP, "both"):
        perp_ok = _perp_candidates(exchange_info(PERP), uni.skipped)
    markets = [SPOT, PERP] if market == "both" else [market]
    for m in markets:
        allowed = spot_ok if m == SPOT else perp_ok
        vols = {}
        for t in tickers(m):
            sym = t.get("symbol")
            if sym in allowed:
                vols[sym] = to_float(t.get("quoteVolume"))
        ranked = sorted(allowed, key=lambda s: (-vols.get(s, 0.0), s))
        if min_quote_volume is not None:
            ranked = [s for s in ranked if vols.get(s, 0.0) >= min_quote_volume]
        if top is not None:
            ranked = ranked[:top]
        for s in ranked:
            uni.quote_volume[(m, s)] = vols.get(s, 0.0)
        if m == SPOT:
            uni.spot = ranked
        else:
            uni.perp = ranked
    for perp_sym, perp_base in perp_ok.items():
        spot_base, mult = map_perp_base(perp_base, spot_bases)
        if spot_base is not None and f"{spot_base}USDT" in spot_ok:
            uni.perp_to_spot[perp_sym] = f"{spot_base}USDT"
            uni.spot_to_perp[f"{spot_base}USDT"] = perp_sym
            uni.multiplier[perp_sym] = mult
    return uni


# --------------------------------------------------------------------------- rules
def _spot_candidates(info: dict, skipped: list[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """TRADING USDT spot pairs minus stablecoins, leveraged tokens and invalid names."""
    symbols = [s for s in info.get("symbols", []) if isinstance(s, dict)]
    bases = {s.get("baseAsset") for s in symbols if s.get("status") == "TRADING"}
    out: dict[str, str] = {}
    for s in symbols:
        sym, base = s.get("symbol", ""), s.get("baseAsset", "")
        if s.get("status") != "TRADING" or s.get("quoteAsset") != "USDT":
            continue
        if not is_valid_symbol(sym):
            log.warning("skipping spot symbol %r: not ^[A-Z0-9]{2,30}$", sym)
            skipped.append((sym, "invalid name"))
            continue
        if base in STABLE_BASES:
            continue
        perms = set(s.get("permissions") or []) | {p for ps in s.get("permissionSets") or [] for p in ps}
        if "LEVERAGED" in perms or _is_leveraged_name(base, bases):
            continue
        out[sym] = base
    return out, {b for b in bases if b}


def _is_leveraged_name(base: str, bases: set[str]) -> bool:
    return any(base.endswith(sfx) and base[: -len(sfx)] in bases for sfx in LEVERAGED_SUFFIXES)


def _perp_candidates(info: dict, skipped: list[tuple[str, str]]) -> dict[str, str]:
    """TRADING USDT-M PERPETUAL contracts minus stablecoin and index contracts."""
    out: dict[str, str] = {}
    for s in info.get("symbols", []):
        if not isinstance(s, dict):
            continue
        sym, base = s.get("symbol", ""), s.get("baseAsset", "")
        if (s.get("contractType") != "PERPETUAL" or s.get("status") != "TRADING"
                or s.get("quoteAsset") != "USDT"):
            continue
        if not is_valid_symbol(sym):
            log.warning("skipping perp symbol %r: not ^[A-Z0-9]{2,30}$", sym)
            skipped.append((sym, "invalid name"))
            continue
        if sym in INDEX_PERPS or base in STABLE_BASES:
            continue
        out[sym] = base
    return out


def map_perp_base(perp_base: str, spot_bases: set[str]) -> tuple[str | None, int]:
    """Spot base asset of a perp base, and the perp's unit multiplier.

    Exact match first (``1INCH`` stays ``1INCH``), then the override table,
    then a multiplier prefix whose remainder is a listed spot base
    (``1000SHIB`` -> ``SHIB``, 1000). ``(None, 1)`` when there is no spot twin.
    """
    if perp_base in spot_bases:
        return perp_base, 1
    if perp_base in PERP_BASE_OVERRIDES and PERP_BASE_OVERRIDES[perp_base] in spot_bases:
        return PERP_BASE_OVERRIDES[perp_base], 1
    for prefix, mult in PERP_MULTIPLIERS.items():
        rest = perp_base[len(prefix):]
        if perp_base.startswith(prefix) and rest in spot_bases:
            return rest, mult
    return None, 1
