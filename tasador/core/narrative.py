"""The reason of a retrain decision in plain words, written from its evidence alone (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from tasador.core import drift
from tasador.core.columns import DATE_COLUMNS, TARGET
from tasador.core.evidence import (
    Evidence,
    FeatureShift,
    LiveDrift,
    ModelCheck,
    Thresholds,
    verdict_of,
)

MISSING_WORTH_SAYING = 0.05  # a change in a feature's missing share the reason mentions


def explain(evidence: Evidence) -> str:
    """A paragraph for people, written from the evidence alone."""
    verdict = verdict_of(evidence)
    b = evidence.batch
    opening = "Retrain (forced by the operator)." if evidence.forced else f"{verdict.capitalize()}."
    survived = f"{b.rows_out:,} of {b.rows_in:,} received rows survived cleaning"
    if evidence.basis == "baseline":
        return (
            f"{opening} No production model exists yet and batch {b.batch_id} is the first "
            f"batch: it is the baseline the first model trains on ({survived})."
        )
    if evidence.basis == "empty":
        return f"{opening} No row of batch {b.batch_id} survived cleaning: nothing to judge."
    if evidence.basis == "too_few_rows":
        return _too_few_rows(evidence, opening, survived)
    ref = evidence.reference
    assert ref is not None
    if evidence.basis == "already_trained":
        return (
            f"{opening} The production model (version {ref.model_version}) was trained on "
            f"batch {b.batch_id} already."
        )
    against = (
        f"production model version {ref.model_version}"
        if ref.model_version
        else "no production model yet, so the baseline batch"
    )
    parts = [
        opening,
        f"Batch {b.batch_id} ({survived}) was compared with the {ref.rows or 0:,} training rows of "
        f"{_batches(ref.batch_ids)} ({against}).",
    ]
    findings = _findings(evidence)
    parts.extend(findings)
    calm = _calm(evidence)
    if findings and calm:
        parts.append(f"Within limits ({_limits(evidence.thresholds)}): {calm}.")
    elif not findings:
        parts.append(f"Nothing moved beyond its limit ({_limits(evidence.thresholds)}): {calm}.")
    blanks = [
        f"{f.column} {_pct(f.reference_missing)} -> {_pct(f.current_missing)}"
        for f in (*evidence.features, *([evidence.target] if evidence.target else []))
        if abs(f.current_missing - f.reference_missing) >= MISSING_WORTH_SAYING
    ]
    if blanks:
        parts.append(
            f"Missing values changed ({', '.join(blanks)}): a data-quality matter for cleaning, "
            "not counted as a shift."
        )
    if not findings and not evidence.forced:
        parts.append("New rows alone are no reason to retrain.")
    if evidence.live is not None and evidence.live.alarm:
        parts.append(f"Also, since the last decision, {live_words(evidence.live)}")
    return " ".join(parts)


def live_summary(live: LiveDrift) -> str:
    """:func:`live_words` as a sentence of its own."""
    words = live_words(live)
    return words[0].upper() + words[1:]


def live_words(live: LiveDrift) -> str:
    """A live drift check in plain words: what moved, or how close it came, or too few rows."""
    served = (
        f"{_count(live.rows, 'listing')} served after request {live.after_request_id} "
        f"(through {live.through_request_id})"
    )
    if not live.compared:
        return (
            f"not enough requests to compare ({live.rows:,} < {live.min_rows:,}, "
            f"TASADOR_LIVE_MIN_ROWS): {served}; no alarm, they are compared once enough arrive."
        )
    t = live.thresholds
    limits = (
        f"limits PSI {t.psi:.2f}, KS D {t.ks_min_statistic:.2f}, unseen categories "
        f"{_points(t.unseen_share)} beyond chance"
    )
    against = (
        f"{served}, against the {live.reference_rows:,} training rows of production version "
        f"{live.model_version} ({_batches(live.reference_batch_ids)})"
    )
    findings = [f"{f.column} by {_shift_words(f)}" for f in live.moved]
    findings.extend(
        f"{_pct(u.share)} of requests have a {_noun(u.column)} never seen in training, mostly "
        f"{_top_values(u.top)} (about {_pct(u.expected_share)} expected by chance)"
        for u in live.unseen
        if u.fired
    )
    if findings:
        return f"the live traffic moved ({limits}): {'; '.join(findings)}. Compared: {against}."
    top = max(live.features, key=lambda f: f.psi or 0)
    return (
        f"the live traffic is within limits ({limits}): the largest feature shift is "
        f"{top.column} with {_shift_words(top)}. Compared: {against}."
    )


def _findings(evidence: Evidence) -> list[str]:
    """One sentence per kind of check that fired, strongest shifts first."""
    t = evidence.thresholds
    limits = f"limits PSI {t.psi:.2f}, KS D {t.ks_min_statistic:.2f}"
    out = []
    target = evidence.target
    if target is not None and target.moved:
        out.append(f"The price distribution moved ({limits}): {_shift_words(target)}.")
    moved = sorted((f for f in evidence.features if f.moved), key=lambda f: -(f.psi or 0))
    if moved:
        listed = "; ".join(f"{f.column} by {_shift_words(f)}" for f in moved)
        out.append(f"{_count(len(moved), 'feature')} moved ({limits}): {listed}.")
    for u in evidence.unseen:
        if u.fired:
            out.append(
                f"{_pct(u.share)} of rows have a {_noun(u.column)} never seen in training, "
                f"mostly {_top_values(u.top)} (about {_pct(u.expected_share)} expected by chance; "
                f"limit {_points(t.unseen_share)} above that)."
            )
    m = evidence.model
    if m is not None and m.broken:
        out.append(f"The production model (version {m.model_version}) is broken: {_broken(m)}.")
    elif m is not None and m.fired:
        assert m.batch_rmsle is not None and m.holdout_rmsle is not None  # not broken
        out.append(
            f"The production model got worse: RMSLE {m.batch_rmsle:.3f} on this batch against "
            f"{m.holdout_rmsle:.3f} on its holdout, {m.ratio:.2f}x (limit "
            f"{t.model_error_ratio:.2f}x)."
        )
    return out


def _calm(evidence: Evidence) -> str:
    """The kinds of check that did not fire, each with how close it came."""
    out = []
    if evidence.features and not any(f.moved for f in evidence.features):
        top = max(evidence.features, key=lambda f: f.psi or 0)
        out.append(f"the largest feature shift is {top.column} with {_shift_words(top)}")
    target = evidence.target
    if target is not None and not target.moved:
        out.append(f"price {_shift_words(target)}")
    if evidence.unseen and not any(u.fired for u in evidence.unseen):
        top_u = max(evidence.unseen, key=lambda u: (u.excess, u.share))
        out.append(
            f"at most {_pct(top_u.share)} of rows have a {_noun(top_u.column)} unseen in training "
            f"(about {_pct(top_u.expected_share)} expected by chance)"
            if top_u.share > 0
            else "no row has a category unseen in training"
        )
    m = evidence.model
    if m is None:
        out.append("no production model to score yet")
    elif not m.fired:
        assert m.batch_rmsle is not None and m.holdout_rmsle is not None  # it would have fired
        out.append(
            f"the production model's RMSLE is {m.batch_rmsle:.3f} on this batch against "
            f"{m.holdout_rmsle:.3f} on its holdout ({m.ratio:.2f}x)"
        )
    return "; ".join(out)


def _too_few_rows(evidence: Evidence, opening: str, survived: str) -> str:
    """Why a batch with too few clean rows is not judged (or what forcing it trains on)."""
    b, needed = evidence.batch, evidence.thresholds.min_clean_rows
    head = (
        f"{opening} Too few rows: in batch {b.batch_id}, {survived}, fewer than the "
        f"{needed:,} clean rows a batch needs to be judged or trained on "
        "(TASADOR_DECIDE_MIN_CLEAN_ROWS)"
    )
    if evidence.forced:
        return (
            f"{head}. The retraining leaves it out and trains on the earlier batches that have "
            "enough rows."
        )
    return (
        f"{head}: on so few rows drift cannot be told from noise. It is left out of training, "
        "and the next batch with enough rows is judged as usual."
    )


def _broken(m: ModelCheck) -> str:
    """What is not finite about a production model's output."""
    said = []
    if m.non_finite_rows:
        said.append(
            f"it priced {m.non_finite_rows:,} of the {m.rows_scored:,} rows of this batch "
            "NaN or infinite"
        )
    elif m.batch_rmsle is None:
        said.append("its RMSLE on this batch is not a finite number")
    if m.holdout_rmsle is None:
        said.append("its holdout RMSLE is not a finite number")
    return "; ".join(said) + " (a model whose output is not finite can only be replaced)"


def _limits(t: Thresholds) -> str:
    return (
        f"PSI {t.psi:.2f}, KS D {t.ks_min_statistic:.2f}, unseen categories "
        f"{_points(t.unseen_share)} beyond chance, model error {t.model_error_ratio:.2f}x "
        "its holdout error"
    )


def _shift_words(f: FeatureShift) -> str:
    """ "PSI 0.31, KS D 0.22 (median 3 -> 4, ...)": the statistics, then what changed."""
    stats = "no values to compare" if f.psi is None else f"PSI {f.psi:.2f}"
    if f.ks_statistic is not None:
        stats += f", KS D {f.ks_statistic:.2f}"
    details = []
    if f.reference_median is not None and f.current_median is not None:
        fmt = _money if f.column == TARGET else _month if f.column in DATE_COLUMNS else _number
        details.append(f"median {fmt(f.reference_median)} -> {fmt(f.current_median)}")
    details.extend(
        f"{_bucket(m.category, f.column)} {_pct(m.reference_share)} -> {_pct(m.current_share)}"
        for m in f.largest_moves[:2]
    )
    return f"{stats} ({', '.join(details)})" if details else stats


def _bucket(label: str, column: str) -> str:
    return f"other {_plural(column)}" if label == drift.OTHER else label


def _noun(column: str) -> str:
    return column.replace("_", " ")


def _plural(column: str) -> str:
    return {"status": "statuses", "city": "cities"}.get(column, f"{_noun(column)}s")


def _top_values(top: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{value} ({rows:,} rows)" for value, rows in top[:3])


def _batches(ids: Sequence[int]) -> str:
    return ("batch " if len(ids) == 1 else "batches ") + ", ".join(str(i) for i in ids)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _points(share: float) -> str:
    return f"{100 * share:.1f} points"


def _number(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1_000 else f"{value:,.0f}"


def _month(decimal_year: float) -> str:
    year = int(decimal_year)
    return f"{year}-{min(int((decimal_year - year) * 12) + 1, 12):02d}"


def _money(value: float) -> str:
    return f"${value:,.0f}"
