"""Per-customer explanations: TreeSHAP contributions summed into driver groups.

A reason is one idea (purchases, attention after purchase, NPS, complaints, attributes),
not five correlated columns: contributions of the features in one group are summed.
The computation itself lives in ``models.serving`` so the registered model explains
exactly as the at-risk list does.
"""
from __future__ import annotations

import pandas as pd

from features.catalogue import feature_group
from models.serving import ChurnRiskServing, explain_contributions
from models.train import ChurnClassifier


def explain(model: ChurnClassifier, features: pd.DataFrame, *, top_k: int = 3) -> pd.DataFrame:
    """reason_group_i, reason_group_i_contribution and driver_i for each row of ``features``,
    indexed like it (see ``models.serving.explain_contributions``)."""
    contrib = model.predict_contributions(features)
    return explain_contributions(contrib, {c: feature_group(c) for c in model.feature_names_}, top_k)


def serving_model(model: ChurnClassifier, *, top_k: int = 3, calibrator=None) -> ChurnRiskServing:
    """The self-contained callable logged to MLflow for this fitted (and calibrated) model."""
    calibration = None if calibrator is None else (calibrator.x_.tolist(), calibrator.y_.tolist())
    return ChurnRiskServing(
        booster_model=model.booster_.model_to_string(), feature_names=model.feature_names_,
        categories=model.categories_, feature_groups={c: feature_group(c) for c in model.feature_names_},
        num_iteration=int(model.best_iteration_), top_k=top_k, calibration=calibration)
