"""The registered pyfunc round trip: what a consumer loads gives what the pipeline computed."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models import registry
from models.explain import explain
from models.train import ChurnClassifier


def frame(n, seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"days_since_last_order": rng.exponential(60, n), "nps_last_score": rng.integers(0, 11, n).astype(float),
                      "segment": pd.Categorical(rng.choice(["smb", "consumer"], n))})
    logit = -2 + X["days_since_last_order"] / 40 - (X["nps_last_score"] - 5) / 3
    return X, pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))


def test_pyfunc_round_trip_through_the_registry(tmp_path):
    X, y = frame(3000, 0)
    Xv, yv = frame(800, 1)
    model = ChurnClassifier(num_boost_round=60).fit(X, y, Xv, yv)
    registry.configure_tracking(tmp_path)
    logged = registry.log_training_run(
        model, experiment="test-roundtrip", model_name="roundtrip", home=tmp_path, params={"a": 1},
        metrics={"test_roc_auc": 0.8}, config={"x": 1}, tags={"t": "1"}, input_example=X.head(3).assign(customer_id=["x", "y", "z"]),
        artifacts={"catalogue.csv": pd.DataFrame({"f": [1]}), "note.json": "{}"})
    assert logged.version == "1" and "champion" in logged.aliases
    loaded, version = registry.load_model("roundtrip")
    assert version == "1"
    Xt, _ = frame(200, 2)
    served = loaded.predict(Xt.assign(customer_id=[f"c{i}" for i in range(len(Xt))],
                                      segment=Xt["segment"].astype(str)))
    np.testing.assert_allclose(served["risk"], model.predict_proba(Xt), rtol=1e-9)
    local = explain(model, Xt)
    assert served["reason_group_1"].fillna("-").tolist() == local["reason_group_1"].fillna("-").tolist()
    assert served["customer_id"].tolist()[:2] == ["c0", "c1"]
    # a second training becomes version 2 and the alias follows it
    logged2 = registry.log_training_run(
        model, experiment="test-roundtrip", model_name="roundtrip", home=tmp_path, params={}, metrics={},
        config={}, tags={}, input_example=X.head(3))
    assert logged2.version == "2" and registry.load_model("roundtrip")[1] == "2"
