"""What `tasador status` reports: stored batches with their cleaning figures (and, as the loop
grows, decisions and models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import make_url

from experiments import promotions, registry
from tasador.core import clean_store, db, decisions_store, lineage, names, raw_store
from tasador.core.config import Settings


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def batch_status(settings: Settings) -> list[dict[str, Any]]:
    clean_engine = db.engine("clean", settings)
    reports = clean_store.cleaning_reports(clean_engine)
    decisions_store.create_schema(clean_engine)
    decisions = decisions_store.latest_by_batch(clean_engine)
    rows = []
    for batch in raw_store.list_batches(db.engine("raw", settings)):
        cleaned = reports.get(batch.id)
        report = cleaned.report if cleaned is not None else None
        rows.append(
            {
                "batch_id": batch.id,
                "group": batch.group_number,
                "day": batch.day or None,
                "batch_number": batch.batch_number,
                "received_at": batch.received_at.isoformat(),
                "rows_received": batch.row_count,
                "rows_clean": cleaned.rows_out if cleaned is not None else None,
                "dropped": report["dropped"] if report else None,
                "fixed": {k: v for k, v in report["fixed"].items() if v} if report else None,
                "payload_sha256": batch.payload_sha256,
                "decision": _decision(decisions.get(batch.id)),
            }
        )
    return rows


def _decision(decision: decisions_store.Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "id": decision.id,
        "verdict": decision.verdict,
        "reason": decision.reason,
        "decided_at": decision.created_at.isoformat(),
    }


def model_status(settings: Settings) -> list[dict[str, Any]]:
    """Every registered version with its lineage, holdout metrics and promotion decision."""
    client = registry.connect(settings)
    clean_engine = db.engine("clean", settings)
    promotions.create_schema(clean_engine)
    decided = {
        p.challenger_version: p for p in promotions.history(clean_engine, settings.model_name)
    }
    versions: list[dict[str, Any]] = []
    found = client.search_registered_models(f"name = '{settings.model_name}'")
    if not found:
        return versions
    aliases: dict[int, list[str]] = {}
    for alias, number in found[0].aliases.items():
        aliases.setdefault(int(number), []).append(alias)
    for version in client.search_model_versions(f"name = '{settings.model_name}'"):
        run = client.get_run(version.run_id) if version.run_id else None
        metrics = run.data.metrics if run else {}
        promotion = decided.get(int(version.version))
        versions.append(
            {
                "version": int(version.version),
                "aliases": aliases.get(int(version.version), []),
                "production": settings.production_alias in aliases.get(int(version.version), []),
                "batch_ids": lineage.decode_batch_ids(version.tags.get(lineage.BATCH_IDS)),
                "study": version.tags.get(lineage.STUDY_NAME),
                "family": version.tags.get(registry.FAMILY_TAG),
                "holdout": names.holdout_metrics(metrics),
                "retrain_reason": version.tags.get(lineage.RETRAIN_REASON),
                "promoted": promotion.promoted if promotion else None,
                "decision": promotion.summary if promotion else None,
                "run_id": version.run_id,
            }
        )
    return sorted(versions, key=lambda v: v["version"])


def status(settings: Settings, models: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {
        "raw_db": _safe(db.database_url("raw", settings)),
        "clean_db": _safe(db.database_url("clean", settings)),
        "batches": batch_status(settings),
    }
    if models:
        report["mlflow_tracking_uri"] = registry.tracking_uri(settings)
        report["optuna_storage"] = _safe(db.database_url("optuna", settings))
        report["model_name"] = settings.model_name
        report["models"] = model_status(settings)
    return report


def models_table(models: list[dict[str, Any]]) -> str:
    lines = [("version", "alias", "batches", "family", "holdout RMSLE", "promoted")]
    for m in models:
        rmsle = m["holdout"].get("rmsle")
        lines.append(
            (
                str(m["version"]),
                ",".join(m["aliases"]) or "-",
                ",".join(str(b) for b in m["batch_ids"]) or "-",
                m["family"] or "-",
                "-" if rmsle is None else f"{rmsle:.4f}",
                {True: "yes", False: "no", None: "-"}[m["promoted"]],
            )
        )
    return render_table(lines)


def batches_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of batches for people."""
    header = ("batch", "group", "number", "received", "clean", "dropped (rule: rows)", "decision")
    lines = [header]
    for r in rows:
        dropped = ", ".join(f"{k}: {v}" for k, v in (r["dropped"] or {}).items() if v) or "-"
        lines.append(
            (
                str(r["batch_id"]),
                str(r["group"]) + (f"/{r['day']}" if r["day"] else ""),
                str(r["batch_number"]),
                str(r["rows_received"]),
                "-" if r["rows_clean"] is None else str(r["rows_clean"]),
                dropped,
                r["decision"]["verdict"] if r["decision"] else "-",
            )
        )
    return render_table(lines)


def render_table(lines: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
