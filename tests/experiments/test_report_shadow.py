"""The model-change report's shadow section, from known shadow rows."""

from __future__ import annotations

from experiments import report
from tasador.core import db, shadow_store
from tasador.core.config import Settings
from tests.helpers.shadow import rows

BASE = "# Model change report\n\n## Champion vs challenger\n\nfigures\n\n## Outcome\n\nkept\n"


def test_shadow_section_figures_and_rewrite(settings: Settings) -> None:
    engine = db.engine("raw", settings.databases)
    shadow_store.write(engine, rows([1.0, 1.02, 1.5], "Texas") + rows([0.5], "Iowa"))
    found = shadow_store.disagreement(engine, "m", "2", "1")
    section = report.shadow_section(found)
    assert section.startswith(report.SHADOW_HEADING)
    assert "on 4 live rows: 50.0% priced within ±10%" in section
    assert "| Iowa | 1 | -0.693 | 0.693 | 0.000 |" in section  # largest disagreement first
    assert section.index("| Iowa |") < section.index("| Texas |")
    assert section.count("█") >= 3  # one bar per non-empty bin

    first = report.with_shadow_section(
        BASE, report.shadow_section(shadow_store.disagreement(engine, "m", "9", "1"))
    )
    assert "no shadow rows compared yet" in first
    assert first.index(report.SHADOW_HEADING) < first.index("## Outcome")
    again = report.with_shadow_section(first, section)  # replaced, not added
    assert again.count(report.SHADOW_HEADING) == 1 and "4 live rows" in again
    assert "no shadow rows" not in again and again.endswith("## Outcome\n\nkept\n")
