"""The tables of the project's two PostgreSQL databases, declared once per database.

:mod:`.raw` holds RAW's tables (batches as received, inference requests, shadow prices),
:mod:`.clean` CLEAN's (cleaned listings, decisions, promotions and alias moves), each in one
``sa.MetaData``. The stores query these tables, and each Alembic environment compares its
migrations against one metadata (``tests/tasador/core/test_schema.py`` checks that a freshly
migrated database has exactly the tables declared here). The migrations stay the history of how
the schema got there; a change of a table here needs a new revision too.
"""

from __future__ import annotations

from tasador.core.tables import clean, raw

__all__ = ["clean", "raw"]
