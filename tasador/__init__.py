"""Tasador: keeps the best house-price model in production while data keeps arriving."""

__version__ = "0.1.0"
