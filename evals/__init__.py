"""Evaluation suites that score any predictor against PyBullet ground truth (see DESIGN.md, Evals)."""
