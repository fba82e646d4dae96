"""Registry behaviour: the pyfunc round trip, the champion gate, promotion and rollback."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import registry
from models.explain import explain
from models.candidates import fit_evaluate
from models.train import split_cutoffs

CUTOFFS = list(pd.date_range("2024-01-01", "2024-12-01", freq="MS"))


def synthetic_frame(n_per_cutoff=600, seed=0):
    """Labelled feature rows over monthly cutoffs; risk rises with recency, falls with NPS."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, cutoff in enumerate(CUTOFFS):
        n = n_per_cutoff
        f = pd.DataFrame({
            "customer_id": [f"c{i}_{j}" for j in range(n)], "cutoff": cutoff,
            "days_since_last_order": rng.exponential(60, n), "nps_last_score": rng.integers(0, 11, n).astype(float),
            "noise": rng.normal(size=n), "segment": pd.Categorical(rng.choice(["smb", "consumer"], n)),
        })
        logit = -1.5 + f["days_since_last_order"] / 40 - (f["nps_last_score"] - 5) / 2
        f["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        parts.append(f)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def trained():
    frame = synthetic_frame()
    split = split_cutoffs(CUTOFFS, horizon_days=60, valid_cutoffs=2)
    good = fit_evaluate(frame, split, ["days_since_last_order", "nps_last_score", "noise", "segment"],
                        {"num_boost_round": 60}, baselines=False)
    bad = fit_evaluate(frame, split, ["noise", "segment"], {"num_boost_round": 20}, baselines=False)
    test = frame[frame["cutoff"] == split.test]
    return frame, good, bad, test


ALL = ["days_since_last_order", "nps_last_score", "noise", "segment"]


def log(report, test, home, cols=ALL, name="gate"):
    return registry.log_training_run(
        report, experiment="test-registry", model_name=name, home=home, params={"n": 1}, config={"x": 1},
        tags={"t": "1"}, test_inputs=test[["customer_id", *cols]],
        artifacts={"catalogue.csv": pd.DataFrame({"f": [1]}), "note.md": "# note"})


def test_pyfunc_round_trip_through_the_registry(trained, tmp_path):
    frame, good, _, test = trained
    cols = good.model.feature_names_
    registry.configure_tracking(tmp_path)
    logged = log(good, test, tmp_path, cols, name="roundtrip")
    assert logged.version == "1" and logged.gate.promoted and "champion" in logged.aliases
    loaded, version = registry.load_model("roundtrip")
    assert version == "1"
    served = loaded.predict(registry.to_model_input(test[["customer_id", *cols]]))
    # the served risk is the calibrated one, and the reasons are the pipeline's own
    np.testing.assert_allclose(served["risk"], good.test_scores["risk"], rtol=1e-9)
    local = explain(good.model, test[cols])
    assert served["reason_group_1"].fillna("-").tolist() == local["reason_group_1"].fillna("-").tolist()
    assert served["customer_id"].tolist() == test["customer_id"].tolist()
    # reasons only where asked for (TreeSHAP is the cost); the risk is the same either way
    inputs = registry.to_model_input(test[["customer_id", *cols]])
    ask = (np.arange(len(inputs)) % 2 == 0)
    partial = loaded.predict(inputs.assign(explain=ask))
    np.testing.assert_allclose(partial["risk"], served["risk"])
    assert partial.loc[~ask, "reason_group_1"].isna().all()
    assert partial.loc[ask, "reason_group_1"].fillna("-").tolist() == served.loc[ask, "reason_group_1"].fillna("-").tolist()


def test_gate_refuses_a_worse_challenger_then_promote_and_rollback(trained, tmp_path):
    frame, good, bad, test = trained
    registry.configure_tracking(tmp_path)
    first = log(good, test, tmp_path)
    assert first.gate.promoted and first.gate.reason.startswith("first model")
    worse = log(bad, test, tmp_path)
    assert not worse.gate.promoted and worse.aliases == ("challenger",)
    assert worse.gate.champion_value > worse.gate.challenger_value
    assert registry.load_model("gate")[1] == "1"
    versions = registry.list_versions("gate").set_index("version")
    assert versions.loc[2, "gate"] == "refused" and "champion" in versions.loc[1, "aliases"]
    # a person overrides the gate, then rolls back
    registry.promote("gate", "2", reason="test override")
    assert registry.load_model("gate")[1] == "2"
    assert registry.rollback("gate") == ("2", "1")
    assert registry.load_model("gate")[1] == "1"
    with pytest.raises(LookupError, match="nothing to roll back"):
        registry.rollback("gate")


def test_a_version_that_passes_the_gate_waits_for_approval(trained, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    frame, good, _, test = trained
    registry.configure_tracking(tmp_path)
    waiting = registry.log_training_run(
        good, experiment="test-registry", model_name="approved", home=tmp_path, params={"n": 1}, config={"x": 1},
        tags={}, test_inputs=test[["customer_id", *ALL]], require_approval=True)
    assert not waiting.gate.promoted and waiting.aliases == ("challenger",)
    assert "awaiting approval" in waiting.gate.reason
    assert registry.awaiting_approval("approved") == ["1"]
    with pytest.raises(LookupError, match="churn registry approve 1"):
        registry.load_model("approved")  # no champion yet, and the message says what to do
    config = tmp_path / "config.yaml"
    config.write_text("registry: {model_name: approved, require_approval: true}\n")
    result = CliRunner().invoke(app, ["registry", "approve", "1", "--config", str(config), "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert registry.load_model("approved")[1] == "1"
    assert registry.awaiting_approval("approved") == []
    again = CliRunner().invoke(app, ["registry", "approve", "1", "--config", str(config), "--home", str(tmp_path)])
    assert again.exit_code == 2 and "does not await approval" in again.output
