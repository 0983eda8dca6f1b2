"""What the prediction form offers: states, cities and zip codes seen in the CLEAN data."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from tasador.core import tables

TOP_CITIES = 300  # per state, most listed first
TOP_ZIPS = 50  # per city


@dataclass(frozen=True)
class Choices:
    """The states, cities and zip codes the prediction form offers, and a typical house size."""

    states: list[str]  # most listed first
    cities: dict[str, list[str]] = field(default_factory=dict)  # state -> cities
    zips: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (state, city) -> zips
    typical_size: float = 1_800.0  # median house size (sq ft)


def load(engine: sa.Engine) -> Choices:
    """Read once per cache period; the CLEAN data changes batch by batch."""
    listings = tables.clean.listings
    with engine.connect() as conn:
        places = conn.execute(
            sa.select(listings.c.state, listings.c.city, listings.c.zip_code, sa.func.count())
            .where(listings.c.state.is_not(None))
            .group_by(listings.c.state, listings.c.city, listings.c.zip_code)
        ).all()
        size = conn.execute(
            sa.select(sa.func.percentile_cont(0.5).within_group(listings.c.house_size))
        ).scalar()
    state_rows: dict[str, int] = {}
    city_rows: dict[tuple[str, str], int] = {}
    zip_rows: dict[tuple[str, str], dict[str, int]] = {}
    for state, city, zip_code, n in places:
        state_rows[state] = state_rows.get(state, 0) + n
        if city is not None:
            city_rows[state, city] = city_rows.get((state, city), 0) + n
            if zip_code is not None:
                zip_rows.setdefault((state, city), {})[zip_code] = n
    states = sorted(state_rows, key=lambda s: -state_rows[s])
    cities: dict[str, list[str]] = {}
    for (state, city), _ in sorted(city_rows.items(), key=lambda item: -item[1]):
        if len(cities.setdefault(state, [])) < TOP_CITIES:
            cities[state].append(city)
    zips = {
        key: sorted(counts, key=lambda z: -counts[z])[:TOP_ZIPS] for key, counts in zip_rows.items()
    }
    return Choices(states, cities, zips, float(size) if size else 1_800.0)
