import gc
import weakref

import pytest

from serving import heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen():
    """The test process's heap frozen by a test is given back to the collector after it."""
    yield
    gc.unfreeze()


def test_settle_collects_the_loads_garbage_then_freezes_what_stays(unfrozen):
    kept = [_Node() for _ in range(1000)]  # what a load keeps: a model's objects
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # what a load leaves behind: a cycle no reference counting frees
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # only a collection frees a cycle
    before = gc.get_freeze_count()

    frozen = heap.settle("a test load")

    assert gone() is None  # collected before the freeze, not frozen forever
    assert frozen >= before + len(kept)
    assert heap.frozen_objects() == frozen  # what /metrics publishes: the count of the settle
    # A full collection now walks only what was allocated since: the kept objects are not in
    # any generation it visits.
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept)
