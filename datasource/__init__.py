"""Data API: serves realtor listings in batches, compatible with the course API."""

from datasource.generator import generate_listings
from datasource.scenarios import list_scenarios

__all__ = ["generate_listings", "list_scenarios"]
