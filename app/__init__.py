"""Streamlit UI."""
