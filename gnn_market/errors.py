"""Exceptions with messages meant for people.

Every error a user can cause (bad input, unreachable host, corrupt file, wrong
checkpoint) is raised as a :class:`CryptoGraphError` subclass. The command-line
entry points catch this base class and print one line on stderr with a
non-zero exit code instead of a traceback (see :func:`gnn_market.cli.run_cli`).
"""
from __future__ import annotations


class CryptoGraphError(Exception):
    """Base class of all errors that should reach the user as one clear line."""


class StoreError(CryptoGraphError):
    """The market store is missing, empty, unwritable or holds a corrupt file."""


class DataError(CryptoGraphError):
    """Input data is malformed, too short, or does not match what was asked for."""


class BinanceError(CryptoGraphError):
    """The Binance API (or a compatible server) failed in a way retries cannot fix."""


class BannedError(BinanceError):
    """HTTP 418: the IP is banned; continuing would extend the ban."""


class UnknownSymbolError(BinanceError):
    """Binance error -1121 (invalid symbol)."""


class CheckpointError(CryptoGraphError):
    """A model checkpoint is missing, corrupt, or does not fit the data."""


class OptionError(CryptoGraphError, ValueError):
    """A keyword argument or option has the wrong type or a value outside its range (also a ``ValueError``)."""


class CacheError(CryptoGraphError):
    """A cache folder cannot be used as given (a file where the folder should be, a damaged lock)."""


class OutageError(BinanceError):
    """The server could not be reached, or kept failing, after every retry (timeouts, refused
    connections, unresolvable host names, HTTP 5xx/408, 429 past its limit, malformed answers):
    a network or server outage that may be over later, unlike a wrong URL or an unknown symbol."""


class RangeOverlapError(CryptoGraphError, ValueError):
    """The environment's hours overlap the hours the encoder's checkpoint was fitted on."""


class EmptyRangeError(DataError, ValueError):
    """No hours are left for the environment (the message says why and what to pass)."""


class BadStoreFile(StoreError):
    """One stored file cannot be read or breaks a store rule (the rest of the store is fine).

    A live job skips that symbol and goes on; :meth:`Store.repair` fixes what it can.
    """


class LegacyStoreError(StoreError):
    """The store is in the one-file-per-symbol layout of formats 1-2; ``migrate`` converts it."""
