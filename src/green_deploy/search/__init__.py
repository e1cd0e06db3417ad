"""Optuna multi-objective search over optimization settings, measured as the study measures."""
