"""What `tasador status` reports: stored batches with their cleaning figures and retrain
decisions, and model versions with their promotion verdicts (typed: ``tasador.core.records``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import make_url

from experiments import promotions, registry
from tasador.core import clean_store, db, decisions_store, lineage, names, raw_store
from tasador.core.config import DatabaseSettings, Settings
from tasador.core.metrics import PRIMARY
from tasador.core.records import (
    AliasMoveStatus,
    BatchStatus,
    GapStatus,
    RetrainDecisionStatus,
    StatusReport,
    VersionStatus,
)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def batch_status(databases: DatabaseSettings) -> list[BatchStatus]:
    """Every stored batch, oldest first, with its cleaning figures and retrain decision."""
    clean_engine = db.engine("clean", databases)
    reports = clean_store.cleaning_reports(clean_engine)
    decisions = decisions_store.latest_by_batch(clean_engine)
    rows = []
    for batch in raw_store.list_batches(db.engine("raw", databases)):
        cleaned = reports.get(batch.id)
        report = cleaned.report if cleaned is not None else None
        decision = decisions.get(batch.id)
        rows.append(
            BatchStatus(
                batch_id=batch.id,
                group=batch.group_number,
                day=batch.day or None,
                batch_number=batch.batch_number,
                received_at=batch.received_at,
                rows_received=batch.row_count + batch.rejected_count,
                rows_clean=cleaned.rows_out if cleaned is not None else None,
                dropped=report["dropped"] if report else None,
                fixed={k: v for k, v in report["fixed"].items() if v} if report else None,
                payload_sha256=batch.payload_sha256,
                rows_rejected=batch.rejected_count,
                decision=None
                if decision is None
                else RetrainDecisionStatus(
                    id=decision.id,
                    verdict=decision.verdict,
                    reason=decision.reason,
                    decided_at=decision.created_at,
                ),
            )
        )
    return rows


def gap_status(databases: DatabaseSettings) -> list[GapStatus]:
    """Every batch number the data API skipped and no replay has filled yet."""
    return [
        GapStatus(
            group=gap.group_number,
            day=gap.day or None,
            batch_number=gap.batch_number,
            detected_at=gap.detected_at,
        )
        for gap in raw_store.open_gaps(db.engine("raw", databases))
    ]


def _improvement(promotion: promotions.Promotion | None) -> tuple[float, float] | None:
    """The interval of a verdict's RMSLE improvement; None when it was not weighed."""
    if promotion is None:
        return None
    low, high = promotion.improvement_low, promotion.improvement_high
    return None if low is None or high is None else (low, high)


def model_status(settings: Settings) -> list[VersionStatus]:
    """Every registered version, oldest first, with lineage, holdout metrics and its
    promotion verdict."""
    client = registry.connect(settings)
    clean_engine = db.engine("clean", settings.databases)
    verdicts = {
        p.challenger_version: p
        for p in promotions.history(clean_engine, settings.mlflow.model_name)
    }
    found = client.search_registered_models(f"name = '{settings.mlflow.model_name}'")
    if not found:
        return []
    aliases: dict[int, list[str]] = {}
    for alias, number in found[0].aliases.items():
        aliases.setdefault(int(number), []).append(alias)
    versions = []
    for version in client.search_model_versions(f"name = '{settings.mlflow.model_name}'"):
        number = int(version.version)
        run = client.get_run(version.run_id) if version.run_id else None
        promotion = verdicts.get(number)
        versions.append(
            VersionStatus(
                version=number,
                aliases=aliases.get(number, []),
                production=settings.mlflow.production_alias in aliases.get(number, []),
                batch_ids=lineage.decode_batch_ids(version.tags.get(lineage.BATCH_IDS)),
                study=version.tags.get(lineage.STUDY_NAME),
                family=version.tags.get(registry.FAMILY_TAG),
                holdout=names.holdout_metrics(run.data.metrics if run else {}),
                retrain_reason=version.tags.get(lineage.RETRAIN_REASON),
                promoted=promotion.promoted if promotion else None,
                verdict=promotion.summary if promotion else None,
                decided_at=promotion.decided_at if promotion else None,
                previous_version=promotion.previous_version if promotion else None,
                run_id=version.run_id or None,
                improvement=_improvement(promotion),
                guard=promotion.guard if promotion else None,
            )
        )
    return sorted(versions, key=lambda v: v.version)


def status(settings: Settings, models: bool = True) -> StatusReport:
    """Batches (and, with ``models``, model versions) as `tasador status` reports them."""
    report = StatusReport(
        raw_db=_safe(db.database_url("raw", settings.databases)),
        clean_db=_safe(db.database_url("clean", settings.databases)),
        batches=batch_status(settings.databases),
        gaps=gap_status(settings.databases),
    )
    if not models:
        return report
    return report.model_copy(
        update={
            "mlflow_tracking_uri": registry.tracking_uri(settings.mlflow),
            "optuna_storage": _safe(db.database_url("optuna", settings.databases)),
            "model_name": settings.mlflow.model_name,
            "models": model_status(settings),
            "alias_history": alias_history(settings),
        }
    )


def alias_history(settings: Settings) -> list[AliasMoveStatus]:
    """Every move of the production alias, oldest first (promotions and rollbacks)."""
    moves = promotions.alias_history(
        db.engine("clean", settings.databases), settings.mlflow.model_name
    )
    return [
        AliasMoveStatus(
            moved_at=m.moved_at,
            version=m.version,
            previous_version=m.previous_version,
            cause=m.cause,
            reason=m.reason,
        )
        for m in moves
        if m.alias == settings.mlflow.production_alias
    ]


def alias_table(moves: list[AliasMoveStatus]) -> str:
    """The alias history as a plain-text table (reasons cut to one line)."""
    lines = [("moved at", "version", "from", "cause", "reason")]
    for m in moves:
        reason = m.reason.splitlines()[0] if m.reason else ""
        lines.append(
            (
                f"{m.moved_at:%Y-%m-%d %H:%M:%S}",
                str(m.version),
                "-" if m.previous_version is None else str(m.previous_version),
                m.cause,
                reason[:100] + ("..." if len(reason) > 100 else ""),
            )
        )
    return render_table(lines)


def models_table(models: list[VersionStatus]) -> str:
    """A plain-text table of model versions for people."""
    lines = [("version", "alias", "batches", "family", "holdout RMSLE", "promoted")]
    for m in models:
        rmsle = m.holdout.get(PRIMARY)
        lines.append(
            (
                str(m.version),
                ",".join(m.aliases) or "-",
                ",".join(str(b) for b in m.batch_ids) or "-",
                m.family or "-",
                "-" if rmsle is None else f"{rmsle:.4f}",
                {True: "yes", False: "no", None: "-"}[m.promoted],
            )
        )
    return render_table(lines)


def batches_table(rows: list[BatchStatus]) -> str:
    """A plain-text table of batches for people."""
    header = (
        "batch",
        "group",
        "number",
        "received",
        "rejected",
        "clean",
        "dropped (rule: rows)",
        "decision",
    )
    lines = [header]
    for r in rows:
        dropped = ", ".join(f"{k}: {v}" for k, v in (r.dropped or {}).items() if v) or "-"
        lines.append(
            (
                str(r.batch_id),
                str(r.group) + (f"/{r.day}" if r.day else ""),
                str(r.batch_number),
                str(r.rows_received),
                str(r.rows_rejected),
                "-" if r.rows_clean is None else str(r.rows_clean),
                dropped,
                r.decision.verdict if r.decision else "-",
            )
        )
    return render_table(lines)


def gaps_text(gaps: list[GapStatus]) -> str:
    """The skipped batch numbers per group and day, with the command that fills them."""
    by_sequence: dict[tuple[int, str | None], list[int]] = {}
    for gap in gaps:
        by_sequence.setdefault((gap.group, gap.day), []).append(gap.batch_number)
    lines = []
    for (group, day), numbers in by_sequence.items():
        where = f"group {group}" + (f" ({day})" if day else "")
        fix = f"tasador recover --group {group}" + (f" --day {day}" if day else "")
        lines.append(f"missing batches of {where}: {', '.join(map(str, numbers))} (run `{fix}`)")
    return "\n".join(lines)


def render_table(lines: Sequence[tuple[str, ...]]) -> str:
    """Rows of cells as left-aligned text columns; the first row is the header, underlined."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
