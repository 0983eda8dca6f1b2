import threading
from collections import Counter
from pathlib import Path

import pytest

from datasource.cursors import CursorStore, Exhausted


def test_serves_each_batch_once_then_exhausts(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c.sqlite3", "src")
    served = [store.serve_next(1, None, 3, lambda k: f"batch {k}") for _ in range(3)]
    assert served == [(0, "batch 0"), (1, "batch 1"), (2, "batch 2")]
    with pytest.raises(Exhausted):
        store.serve_next(1, None, 3, lambda k: k)
    assert store.position(1, None) == 3


def test_groups_days_and_sources_have_their_own_cursors(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = CursorStore(path, "src")
    store.serve_next(1, None, 5, str)
    store.serve_next(1, None, 5, str)
    assert store.serve_next(2, None, 5, str) == (0, "0")
    assert store.serve_next(1, "Tuesday", 5, str) == (0, "0")
    assert CursorStore(path, "other-src").position(1, None) == 0
    assert store.position(1, None) == 2


def test_cursor_survives_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    CursorStore(path, "src").serve_next(4, "Wednesday", 5, str)
    assert CursorStore(path, "src").serve_next(4, "Wednesday", 5, str) == (1, "1")


def test_restart_goes_back_to_batch_zero_for_that_group_only(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c.sqlite3", "src")
    for group in (1, 2):
        store.serve_next(group, None, 5, str)
    store.restart(1, None)
    assert store.position(1, None) == 0
    assert store.position(2, None) == 1


def test_a_failed_build_does_not_move_the_cursor(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c.sqlite3", "src")

    def broken(k: int) -> str:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.serve_next(1, None, 5, broken)
    assert store.serve_next(1, None, 5, str) == (0, "0")


def test_concurrent_requests_never_skip_or_repeat(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    stores = [CursorStore(path, "src") for _ in range(2)]  # as if two processes shared the file
    served: list[int] = []
    exhausted = Counter[str]()
    lock = threading.Lock()

    def worker(store: CursorStore) -> None:
        for _ in range(15):
            try:
                number, _ = store.serve_next(7, None, 20, lambda k: k)
            except Exhausted:
                with lock:
                    exhausted["n"] += 1
                continue
            with lock:
                served.append(number)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(served) == list(range(20))
    assert exhausted["n"] == 4 * 15 - 20
