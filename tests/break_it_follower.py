"""Break-it attempts: follower (see tests/break_it.py)."""
from __future__ import annotations

from break_it import Attempt

ATTEMPTS: list[Attempt] = []
