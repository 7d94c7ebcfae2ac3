"""Plain-number copies of the data limits the data CLI's ``--help`` shows, importable without pandas.

The real values live in heavier modules: :data:`gnn_market.panel.BOOK_TOLERANCE` (a
``pd.Timedelta``) and :data:`gnn_market.vision.MAX_MEMBER_BYTES` (beside zipfile and pandas).
``python -m gnn_market.data --help`` must answer without importing them, so the parser reads
these numbers instead; ``tests/test_cli_help.py`` fails if a copy and its original ever differ.
(The follow-up that removes the copies: panel.py and vision.py define theirs from this module.)
"""
from __future__ import annotations

#: Seconds: the panel's row for hour ``t`` uses a book snapshot taken at most this long before
#: ``t + 1h`` (= ``panel.BOOK_TOLERANCE.total_seconds()``); ``collect --book-lead`` may not exceed it.
BOOK_TOLERANCE_S = 300.0

#: Largest file, and largest uncompressed zip member, ``import-vision`` reads (= ``vision.MAX_MEMBER_BYTES``).
MAX_MEMBER_BYTES = 512 * 2 ** 20
