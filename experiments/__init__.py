"""Model search, evaluation, champion/challenger and SHAP."""
