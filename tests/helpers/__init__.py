"""What tests share by import: plain functions, classes and constants, grouped by topic.

Test modules and conftests import only from here (never from another test module or conftest);
shared fixtures live in ``tests/fixtures`` and reach every test through ``pytest_plugins`` in the
root conftest, so they are requested by name and never imported.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
