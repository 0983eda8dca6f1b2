import numpy as np
import pandas as pd
import pytest

from tasador.core.sampling import at_most


def test_sample_is_reproducible_and_bounded() -> None:
    values = pd.Series(np.arange(1_000))
    a, b = at_most(values, 100, seed=3), at_most(values, 100, seed=3)
    assert len(a) == 100 and a.equals(b) and a.is_unique
    assert not a.equals(at_most(values, 100, seed=4))
    assert at_most(values, 5_000) is values
    with pytest.raises(ValueError):
        at_most(values, 0)


def test_keep_order_returns_the_sample_in_its_original_order() -> None:
    frame = pd.DataFrame({"x": np.arange(500)})
    drawn = at_most(frame, 50, seed=1)
    ordered = at_most(frame, 50, seed=1, keep_order=True)
    assert not drawn.index.is_monotonic_increasing and ordered.index.is_monotonic_increasing
    assert sorted(drawn.index) == list(ordered.index)
