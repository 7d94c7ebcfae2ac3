"""The one atomic-write helper: all or nothing, usual permissions, clear errors."""
from __future__ import annotations

import os
import stat

import pytest

from gnn_market.atomic import atomic_dir, atomic_path, write_text_atomic
from gnn_market.errors import DataError, StoreError


def test_written_file_gets_the_umask_mode_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    # mkstemp would leave 0o600; the module's umask was read at import, so compare with it.
    from gnn_market import atomic
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~atomic._UMASK
    assert stat.S_IMODE(path.stat().st_mode) & stat.S_IRGRP or atomic._UMASK & 0o040


def test_failure_inside_the_block_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_unwritable_folder_is_one_error_of_the_given_type(tmp_path):
    with pytest.raises(DataError, match="cannot write"):
        with atomic_path(tmp_path / "missing" / "x.bin", DataError):
            pass
    with pytest.raises(StoreError, match="cannot write"):
        write_text_atomic(tmp_path / "missing" / "x.txt", "x")


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "entry"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    from gnn_market import atomic
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~atomic._UMASK
    assert stat.S_IMODE((target / "a.txt").stat().st_mode) == 0o666 & ~atomic._UMASK
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with atomic_dir(target) as tmp:  # an existing folder is replaced, not merged
        (tmp / "b.txt").write_text("two")
    assert [p.name for p in target.iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no temporary or old folder left
    with pytest.raises(DataError, match="cannot write"):
        with atomic_dir(tmp_path / "missing" / "entry", DataError):
            pass


def test_atomic_dir_through_a_symbolic_link_replaces_the_folder_it_leads_to(tmp_path):
    (tmp_path / "disk").mkdir()
    real = tmp_path / "disk" / "export"
    real.mkdir()
    (real / "old.txt").write_text("old")
    link = tmp_path / "export"
    link.symlink_to(real)
    with atomic_dir(link) as tmp:
        (tmp / "new.txt").write_text("new")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert [p.name for p in real.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["export"]  # nothing left beside it


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path):
    """Issue 21 item 6: the rename replaced the link by a plain file; readers of its target saw nothing."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "data.txt"
    target.write_text("old")
    link = tmp_path / "data.txt"
    link.symlink_to(target)
    chain = tmp_path / "chain.txt"
    chain.symlink_to(link)  # a link to a link: followed to the end
    write_text_atomic(chain, "new")
    assert chain.is_symlink() and link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "later.txt"
    dangling.symlink_to(tmp_path / "real" / "later.txt")  # its target does not exist yet: created
    write_text_atomic(dangling, "first")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.txt").read_text() == "first"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["data.txt", "later.txt"]
