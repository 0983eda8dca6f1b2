"""The shared holdout rule, fixed and documented.

A row is in the holdout when a stable hash of its content falls in the lowest
``HOLDOUT_SHARE`` of the hash range. Because it depends on the content only (not on arrival order,
batch id or a random seed), re-cleaning a batch puts every row on the same side, and the challenger
and the production model are always scored on the very same rows. About 20% of every batch.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from tasador.core.columns import RAW_COLUMNS

HOLDOUT_SHARE = 0.2


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit content hash per clean row (as int64, to fit a Postgres bigint).

    It hashes the typed values, so it is stable as long as cleaning yields the same dtypes.
    """
    hashed = pd.util.hash_pandas_object(frame.loc[:, list(RAW_COLUMNS)], index=False)
    hashed = hashed.to_numpy(dtype=np.uint64)
    return cast(np.ndarray, hashed.view(np.int64))


def is_holdout(hashes: np.ndarray, share: float = HOLDOUT_SHARE) -> np.ndarray:
    """Whether each row hash falls in the holdout: the lowest ``share`` of the hash range."""
    unsigned = hashes.view(np.uint64)
    return (unsigned % np.uint64(10_000)) < np.uint64(round(share * 10_000))
