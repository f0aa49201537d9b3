"""Evaluation suites that score any predictor against PyBullet ground truth (see DESIGN.md, Evals)."""

from worldsim.evals.protocol import Predictor, Scenario, check_prediction

__all__ = ["Predictor", "Scenario", "check_prediction"]
