"""CI replay of every break-it attempt (tests/break_it.py): each must be handled cleanly."""
from __future__ import annotations

import pytest

from break_it import AREAS, all_attempts, replay, table


@pytest.mark.parametrize("area", AREAS)
def test_every_attempt_is_handled_cleanly(area):
    attempts = all_attempts([area])
    assert attempts, f"area {area} lists no attempts"
    results = replay(attempts)
    print(table(results))
    assert all(r.handled for r in results), table(results)
