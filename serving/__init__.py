"""FastAPI service for the production model."""
