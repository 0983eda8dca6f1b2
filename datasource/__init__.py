"""Data API: serves realtor listings in batches, compatible with the course API."""
