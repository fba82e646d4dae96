"""Quality of the two lists on a simulated company whose truth is known (truth.parquet).

    .venv/bin/python benchmarks/bench_lists.py --data DIR --home H [--model-name churn-risk]

DIR: a simulation (``churn simulate --no-cancellations --out DIR``), H: the home of a
``churn train --data DIR --home H`` run. Measures, with the default settings:
- the share of the top 10% of the retention list (at_risk) already gone before the scoring
  date (the simulator's churned_at), with the lapse rule off (the list before) and on;
- the win-back list: the share already gone (precision) and the share of the gone it holds;
- the tier shares;
- true drivers: among the clients at a truth date whose true risk is in the top 20% and whose
  risk has one dominant driver group (at least 60% of the positive log-odds), the share whose
  group is among the list's first two reasons (attribute-driven clients apart: a profile is
  never a reason);
- stability: the same company scored a week apart: the share of the clients explained both
  weeks whose leading reason group, and whose action, is unchanged.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--model-name", default="churn-risk")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{(args.home / 'mlflow' / 'mlflow.db').resolve()}"

    from features.build import build_features, channel_list, is_contractual
    from features.inputs import load_data
    from features.labels import default_as_of
    from models import registry
    from models.score import LapseRule, make_lists
    from pipelines.settings import Settings

    settings = Settings()
    model, version = registry.load_model(args.model_name)
    channels = channel_list(registry.input_columns(model))
    tables = load_data(args.data).tables
    truth = pd.read_parquet(args.data / "truth.parquet")
    churned = truth.drop_duplicates("customer_id").set_index("customer_id")["churned_at"]
    predict = lambda frame: model.predict(registry.to_model_input(frame))  # noqa: E731
    contractual = is_contractual(tables)

    def lists(as_of, **kw):
        features = build_features(tables, [as_of], config=settings.feature_config(), channels=channels).drop(columns="cutoff")
        t0 = time.perf_counter()
        out = make_lists(predict, features, as_of=as_of, model_version=version, contractual=contractual, **kw)
        return out, time.perf_counter() - t0

    def gone(ids, as_of):
        return churned.reindex(ids).lt(as_of).to_numpy()

    as_of = default_as_of(tables)
    print(f"scoring date {as_of.date()}, model version {version}, {'contractual' if contractual else 'no cancellations'}")
    for label, rule in (("lapse rule off (the list before)", LapseRule(enabled=False)), ("lapse rule on (default)", LapseRule())):
        (at_risk, win_back, _), seconds = lists(as_of, lapse=rule)
        g = gone(at_risk["customer_id"], as_of)
        n = int(np.ceil(0.1 * len(at_risk)))
        tiers = at_risk["tier"].value_counts(normalize=True).reindex(["high", "medium", "low"]).fillna(0)
        print(f"{label}: at_risk {len(at_risk):,} clients, top 10% already gone {g[:n].mean():.1%}, top 100 "
              f"{g[:100].mean():.1%}, whole list {g.mean():.1%}; tiers " + ", ".join(f"{k} {v:.1%}" for k, v in tiers.items())
              + f"; risk at its bounds: {int((at_risk['risk'] >= 0.99).sum()):,} at 99%; {seconds:.1f} s")
        if len(win_back):
            w = gone(win_back["customer_id"], as_of)
            all_gone = g.sum() + w.sum()
            print(f"  win_back {len(win_back):,} clients: {w.mean():.1%} already gone; holds {w.sum() / all_gone:.1%} of the "
                  f"gone; by rule " + ", ".join(f"{k} {v:,}" for k, v in win_back["lapse_rule"].value_counts().items()))

    print(driver_recovery(lists, truth))
    print(stability(lists, as_of))


def driver_recovery(lists, truth: pd.DataFrame) -> str:
    """The true-driver measure at the latest truth date; ``lists(as_of, **kw)`` -> (Lists, seconds)."""
    truth_day = truth["as_of"].max()
    (at_risk, _, drivers), _ = lists(truth_day, explain_all=True)
    t = truth[truth["as_of"] == truth_day].set_index("customer_id")
    contrib = t[[c for c in t.columns if c.startswith("contrib_")]].clip(lower=0)
    dominant = contrib.idxmax(axis=1).str.removeprefix("contrib_")
    share = contrib.max(axis=1) / contrib.sum(axis=1).replace(0, np.nan)
    listed = at_risk.set_index("customer_id")
    chosen = t.index[(t["true_risk"] >= t["true_risk"].quantile(0.8)) & (share >= 0.6)].intersection(listed.index)
    r = listed.loc[chosen]
    hit = pd.Series([(d in (a, b)) for d, a, b in zip(dominant.loc[chosen], r["reason_group_1"], r["reason_group_2"])],
                    index=chosen, dtype=bool)
    dom = dominant.loc[chosen]
    actionable = dom != "attributes"
    by_group = ", ".join(f"{g} {hit[actionable & (dom == g)].mean():.0%} of {int((actionable & (dom == g)).sum())}"
                         for g in sorted(set(dom[actionable])))
    base = ", ".join(f"{row.leading_reason_group} {row.base:.0%}" for row in drivers.itertuples())
    return (f"true drivers at {truth_day.date()}: {hit[actionable].mean():.1%} of {int(actionable.sum()):,} single-driver "
            f"high-risk clients on the retention list have their true group among the first two reasons ({by_group}); "
            f"attribute-driven, shown as profile, never a reason: {int((~actionable).sum()):,}\n"
            f"drivers across the base (sample): {base}")


def stability(lists, as_of: pd.Timestamp) -> str:
    """The same company scored a week apart: leading reason group and action unchanged."""
    (week1, _, _), _ = lists(as_of - pd.Timedelta(days=7))
    (week2, _, _), _ = lists(as_of)
    a = week1[week1["action_key"].notna()].set_index("customer_id")
    b = week2[week2["action_key"].notna()].set_index("customer_id")
    both = a.index.intersection(b.index)
    same_group = (a.loc[both, "reason_group_1"].fillna("none") == b.loc[both, "reason_group_1"].fillna("none")).mean()
    same_action = (a.loc[both, "action_key"] == b.loc[both, "action_key"]).mean()
    return (f"a week apart: {len(both):,} clients explained both weeks; leading reason group unchanged for "
            f"{same_group:.1%}, action unchanged for {same_action:.1%}")


if __name__ == "__main__":
    main()
