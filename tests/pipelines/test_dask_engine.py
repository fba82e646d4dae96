"""The Dask engine gives the single-machine answers: a real LocalCluster of 2 worker
processes on a small simulated company with bad rows in it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import psutil
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from features import build, labels, shard
from features.inputs import ContractError, SourceConfig, read_source, validate_source
from features.simulate import simulate, write_dataset
from pipelines.settings import Settings

SHARDS = 3


@pytest.fixture(scope="module")
def dirty_data(tmp_path_factory) -> Path:
    """700 simulated customers, with rows that validation must quarantine: an order of an
    unknown customer, one far in the future, one with a negative amount, a duplicated customer."""
    tables = simulate(700, seed=11, truth_rollouts=0)
    tables.pop("truth")
    orders, customers = tables["orders"], tables["customers"]
    bad = orders.iloc[[3, 5, 8]].copy()
    bad["customer_id"] = bad["customer_id"].astype("object")
    bad.iloc[0, bad.columns.get_loc("customer_id")] = "NOBODY-1"
    bad.iloc[1, bad.columns.get_loc("ordered_at")] = pd.Timestamp("2099-01-01")
    bad.iloc[2, bad.columns.get_loc("amount")] = -12.5
    bad["order_id"] = ["BAD-1", "BAD-2", "BAD-3"]
    tables["orders"] = pd.concat([orders.iloc[:10], bad, orders.iloc[10:]], ignore_index=True)
    tables["customers"] = pd.concat([customers, customers.iloc[[4]]], ignore_index=True)
    folder = tmp_path_factory.mktemp("dirty")
    write_dataset(tables, folder)
    return folder


@pytest.fixture(scope="module")
def dask_settings() -> Settings:
    # a small BG/NBD sample: the parameters come from a seeded sample drawn across the shards
    return Settings().with_overrides(**{"engine.kind": "dask", "engine.workers": 2, "engine.shards": SHARDS,
                                        "features.btyd_sample": 300, "cutoffs.max_cutoffs": 8,
                                        "train.num_boost_round": 60, "train.backtest_folds": 0})


def _worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def _gone(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def test_features_labels_quarantine_and_reconciliation_equal_the_single_machine_ones(dirty_data, dask_settings, tmp_path):
    from models.train import training_data
    from pipelines import engine

    local, _ = validate_source(dask_settings.source, dask_settings.validation, dirty_data, tmp_path / "local_validation")
    assert local.summary["rows_quarantined"].sum() >= 4
    config = dask_settings.feature_config()
    frame, plan = training_data(local.sources, horizon_days=90, max_cutoffs=8, config=config)

    with engine.run(dask_settings.engine, tmp_path / "home", "features") as r:
        pids = _worker_pids(r.client)
        assert len(pids) == 2 and os.getpid() not in pids
        v = engine.validate(r, dask_settings, dirty_data, tmp_path / "dask_validation", data_end=local.data_end)
        paths, _ = engine.build_shards(r, v, plan.cutoffs, config, channels=None, horizon_days=90)
        sharded = engine.collect(paths)
        trained_on, dask_plan, notes = engine.training_set(r, v, dask_settings.with_overrides(**{"engine.train_sample": 800}))
        # a LightGBM model, scored shard by shard: risks and TreeSHAP reasons per shard, ranked once
        served = _lightgbm(frame, plan)
        as_of = labels.default_as_of(local.sources)
        channels = build.channel_list(served.inputs)
        paths, _ = engine.build_shards(r, v, [as_of], config, channels=channels, scoring=True)
        model = SimpleNamespace(predict=served)
        lists = engine.lists_on_shards(r, paths, model, served.inputs, as_of=as_of, version="7", settings=dask_settings,
                                       contractual=True)
    assert _gone(pids), "a worker process outlived the run"
    assert not (r.folder / "work").exists() and not (r.folder / "input").exists()

    assert len(frame) > 1000 and frame["label"].nunique() == 2 and frame["btyd_p_alive"].notna().all()
    pd.testing.assert_frame_equal(sharded, frame, check_exact=True)
    pd.testing.assert_frame_equal(v.result.summary, local.summary, check_exact=True)
    assert set(v.result.quarantine) == set(local.quarantine)
    for table, q in local.quarantine.items():
        pd.testing.assert_frame_equal(v.result.quarantine[table], q, check_exact=True, check_dtype=False)
    def rules(frame):
        return frame.sort_values(["table", "column", "check"])[["table", "column", "check", "rows"]].reset_index(drop=True)

    pd.testing.assert_frame_equal(rules(v.result.row_problems), rules(local.row_problems), check_dtype=False)
    for name in ("quarantine_orders.csv", "quarantine_customers.csv", "validation_summary.csv"):
        assert (tmp_path / "dask_validation" / name).read_text() == (tmp_path / "local_validation" / name).read_text()

    # the training sample: stratified by cutoff and label, said in the model card's notes
    assert dask_plan.cutoffs == plan.cutoffs
    assert abs(len(trained_on) - 800) <= 2 * frame.groupby(["cutoff", "label"]).ngroups
    share = trained_on.groupby(["cutoff", "label"]).size() / frame.groupby(["cutoff", "label"]).size()
    assert share.between(800 / len(frame) - 0.02, 800 / len(frame) + 0.02).all()
    assert any("stratified by cutoff and label" in n for n in dask_plan.notes)
    assert trained_on.merge(frame, on=list(frame.columns), how="left", indicator=True)["_merge"].eq("both").all()

    features = build.features_for_scoring(local.sources, as_of, config=config, channels=channels).drop(columns="cutoff")
    expected = engine.one_machine_lists(features, model, served.inputs, as_of=as_of, version="7",
                                        settings=dask_settings, contractual=True)
    assert len(expected.at_risk) > 300 and expected.at_risk["reason_1"].notna().sum() > 30
    assert lists.at_risk["customer_id"].tolist() == expected.at_risk["customer_id"].tolist()
    np.testing.assert_allclose(lists.at_risk["risk"], expected.at_risk["risk"], rtol=0, atol=1e-9)
    for got, want in zip(lists, expected):
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def _lightgbm(frame: pd.DataFrame, plan):
    """A LightGBM champion alone (no buy-till-you-die part fitted on the scored rows), as served."""
    from models import candidates

    assert plan.split.complete
    report = candidates.fit_evaluate(frame, plan.split, build.feature_columns(frame),
                                     Settings().train.model_params() | {"num_boost_round": 60}, baselines=False,
                                     stack=False, horizon_days=90, contractual=True)
    return candidates.serving_model(report)


def test_scored_lists_equal_the_single_machine_ones(trained, dirty_data, dask_settings, tmp_path):
    from pipelines.flows import score_flow

    result, home = trained
    local = score_flow(dirty_data, tmp_path / "local", dask_settings.with_overrides(**{"engine.kind": "local"}), home,
                       model_uri=result.model_uri)
    sharded = score_flow(dirty_data, tmp_path / "dask", dask_settings, home, model_uri=result.model_uri)
    assert sharded.as_of == local.as_of and sharded.rows == local.rows and sharded.win_back_rows == local.win_back_rows
    a, b = pd.read_parquet(local.parquet), pd.read_parquet(sharded.parquet)
    assert len(a) > 300 and a["reason_1"].notna().sum() > 20
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    np.testing.assert_allclose(b["risk"], a["risk"], rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(b, a, check_exact=True)  # reasons, actions, tiers: identical
    pd.testing.assert_frame_equal(pd.read_parquet(sharded.win_back_parquet), pd.read_parquet(local.win_back_parquet))
    assert (tmp_path / "dask" / "validation" / "validation_summary.csv").read_text() == \
        (tmp_path / "local" / "validation" / "validation_summary.csv").read_text()
    # under the test harness (a Prefect API server) every shard's step was a Prefect task run (the
    # scoring steps too when the champion scores shard by shard: not a model fitted on its batch)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    steps = ["validate", "features-pass", "btyd-pass"]
    if not any("lists were made on one machine" in w for w in sharded.warnings):
        steps += ["gaps", "score", "list"]
    expected = {f"{s}-shard-{k}" for s in steps for k in range(SHARDS)}
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=sorted(expected))))
    assert {t.name for t in runs if t.state.is_completed()} == expected


def test_an_existing_sharded_dataset_is_read_and_a_foreign_one_refused(dirty_data, dask_settings, tmp_path):
    from pipelines import engine

    raw = read_source(SourceConfig(), dirty_data)
    mine = shard.write_shards(raw, tmp_path / "mine", SHARDS)
    assert [Path(f).name for f in mine.folders] == [f"shard={k}" for k in range(SHARDS)]
    assert sum(len(pd.read_parquet(Path(f) / "orders.parquet")) for f in mine.folders) == len(raw["orders"].read())
    # sharded some other way: the customers of shard 0 and shard 1 swapped
    foreign = shard.write_shards(raw, tmp_path / "foreign", SHARDS)
    (tmp_path / "foreign" / "shard=0").rename(tmp_path / "foreign" / "swap")
    (tmp_path / "foreign" / "shard=1").rename(tmp_path / "foreign" / "shard=0")
    (tmp_path / "foreign" / "swap").rename(tmp_path / "foreign" / "shard=1")
    s = dask_settings.with_overrides(**{"engine.dataset": str(tmp_path / "mine")})
    with engine.run(s.engine, tmp_path / "home", "validate") as r:
        v = engine.validate(r, s, None, tmp_path / "validation")
        assert len(v.parts) == SHARDS
        s = s.with_overrides(**{"engine.dataset": foreign.root})
        with pytest.raises(ContractError, match=r"belongs in shard=1, not shard=0 .*not sharded by this project's hash"):
            engine.validate(r, s, None, tmp_path / "validation")
    with pytest.raises(ContractError, match="shard=1 is missing"):
        (tmp_path / "mine" / "shard=1" / "orders.parquet").unlink()
        import shutil

        shutil.rmtree(tmp_path / "mine" / "shard=1")
        shard.shard_folders(tmp_path / "mine")


# -- the stable hash ------------------------------------------------------------------------------

def test_the_hash_is_blake2b_of_the_canonical_id():
    import hashlib

    assert shard.customer_hash("C000017") == int.from_bytes(hashlib.blake2b(b"C000017", digest_size=8).digest(), "big")
    # pinned: a change of the hash moves every customer to another shard of existing datasets
    assert shard.customer_hash("C000017") == 0x4E79F8E9B447A6E0
    assert shard.shard_of("C000017", 8) == 0 and shard.shard_of("C000017", 7) == 0x4E79F8E9B447A6E0 % 7
    ids = pd.Series([" 0042 ", "42", "42.0", None, "null"])
    canonical = shard.canonical_ids(ids)
    assert canonical.iloc[0] == "0042" and pd.isna(canonical.iloc[3]) and pd.isna(canonical.iloc[4])
    assert shard.shard_ids(canonical, 5)[3] == 0  # a missing id: shard 0, where validation quarantines it


@hsettings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=40), shards=st.integers(1, 64))
def test_vectorised_shards_equal_one_by_one(ids, shards):
    out = shard.shard_ids(pd.Series(ids, dtype="object"), shards)
    assert out.tolist() == [shard.shard_of(i, shards) for i in ids]
    assert ((0 <= out) & (out < shards)).all()


def test_the_shard_of_a_customer_does_not_depend_on_the_process_or_its_hash_seed():
    ids = [f"C{i:06d}" for i in range(0, 5000, 7)] + ["é-client", "ünïcode", "a b"]
    here = shard.shard_ids(pd.Series(ids, dtype="object"), 16).tolist()
    code = ("import sys, json; from features.shard import shard_of; "
            "print(json.dumps([shard_of(i, 16) for i in json.loads(sys.stdin.read())]))")
    import json

    for seed in ("1", "4242"):
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(ids), capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        assert json.loads(out.stdout) == here
    assert len(set(here)) == 16  # every shard gets customers


def test_sample_quotas_keep_each_stratum_in_proportion():
    from pipelines.engine import sample_quotas

    strata = [{("a", 0): 500, ("a", 1): 100}, {("a", 0): 300, ("a", 1): 100, ("b", 0): 7}]
    quotas, total = sample_quotas(strata, 101)
    assert total == 1007
    assert sum(q.get(("a", 0), 0) for q in quotas) == round(800 * 101 / 1007)
    assert sum(q.get(("a", 1), 0) for q in quotas) == round(200 * 101 / 1007)
    assert sum(q.get(("b", 0), 0) for q in quotas) == 1
    assert sample_quotas(strata, 5000) == ([dict(s) for s in strata], 1007)


# -- under a Prefect server -----------------------------------------------------------------------

def _runs_on(url: str, flow_name: str):
    """The flow runs of ``flow_name`` on the server at ``url``, their sub-flow runs and the
    task runs of those: (runs, sub-flow runs, task runs)."""
    import asyncio

    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId,
                                                FlowRunFilterParentFlowRunId)

    async def read():
        async with PrefectClient(url) as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
            subs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[r.id for r in runs]))) if runs else []
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[s.id for s in subs]))) if subs else []
            return runs, subs, tasks
    return asyncio.run(read())


def _group(pgid: int) -> list[str]:
    """The processes still in the process group ``pgid`` (zombies aside)."""
    left = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(" ".join(p.info["cmdline"] or [])[:200])
        except (ProcessLookupError, psutil.Error):
            pass
    return left


def test_under_a_prefect_server_each_shard_is_a_task_run_and_the_table_is_the_local_one(prefect_server, sim_data,
                                                                                         tmp_path):
    churn = Path(sys.executable).with_name("churn")
    args = ["features", "--data", str(sim_data), "--cutoff", "2025-06-01", "--cutoff", "2025-09-01", "--labels",
            "--home", str(tmp_path / "home")]
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "CHURN_ORCHESTRATION": "auto",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    local = subprocess.run([str(churn), *args, "--out", str(tmp_path / "local.parquet")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    proc = subprocess.Popen([str(churn), *args, "--out", str(tmp_path / "dask.parquet"), "--engine", "dask",
                             "--workers", "2", "--shards", "4"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, errors = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode == 0, errors[-3000:]
    assert _group(proc.pid) == [], "a process of the verb (a Dask worker, a Prefect server) outlived it"

    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "dask.parquet").sort_values(["cutoff", "customer_id"], kind="stable")
    assert len(a) > 1000 and a["label"].nunique() == 2
    pd.testing.assert_frame_equal(b.reset_index(drop=True), a, check_exact=True)

    runs, subs, tasks = _runs_on(prefect_server, "features")
    assert [r.state.type.value for r in runs] == ["COMPLETED"]
    steps = ["validate", "channel-counts", "features-pass", "btyd-pass"]
    assert sorted(s.name for s in subs) == sorted(f"{s}-shards" for s in steps)
    assert all(s.state.is_completed() for s in subs)
    assert sorted(t.name for t in tasks) == sorted(f"{s}-shard-{k}" for s in steps for k in range(4))
    assert {t.state.type.value for t in tasks} == {"COMPLETED"}


def test_ids_that_meet_only_after_the_ids_option_land_in_one_shard(tmp_path):
    """A sales export's '0000094' and the CRM's '94' (``source.ids.strip_leading_zeros``) are
    one customer: the shards are cut on the id as validation reads it, so they meet."""
    from features.inputs.config import IdOptions
    from features.shard import write_shards

    crm = pd.DataFrame({"customer_id": [str(i) for i in range(1, 41)], "created_at": "2024-01-01"})
    sales = pd.DataFrame({"order_id": [f"o{i}" for i in range(1, 41)], "customer_id": [f"{i:07d}" for i in range(1, 41)],
                          "ordered_at": "2024-02-01", "amount": "10"})
    write_shards({"customers": crm, "orders": sales}, tmp_path / "input", 4, IdOptions(strip_leading_zeros=True))
    for k in range(4):
        folder = tmp_path / "input" / f"shard={k}"
        kept = set(pd.read_parquet(folder / "customers.parquet")["customer_id"])
        ordered = {str(int(c)) for c in pd.read_parquet(folder / "orders.parquet")["customer_id"]}
        assert ordered == kept  # every order sits with its customer
