"""The feature cache: a rerun on the same inputs and config reads the table back instead of
building it; one changed input byte, config value, cutoff or line of feature code builds it again."""
from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from features import build
from features.cache import FeatureCache, cache_key
from features.config import FeatureConfig
from features.inputs import load_data

AS_OF = pd.Timestamp("2025-06-01")


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    from features.simulate import simulate, write_dataset

    folder = tmp_path_factory.mktemp("csv")
    write_dataset(simulate(200, seed=5, truth_rollouts=0), folder, fmt="csv")
    return folder


class Counting:
    """``features_for_scoring`` counting its calls (the same name, so the same cache key)."""

    def __init__(self):
        self.calls = 0
        self.real = build.features_for_scoring
        self.__module__ = build.features_for_scoring.__module__
        self.__qualname__ = build.features_for_scoring.__qualname__

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


def test_a_rerun_reads_the_table_back_and_a_changed_config_or_cutoff_builds_it(sim_data, tmp_path):
    sources = load_data(sim_data).sources
    cache, builder = FeatureCache(tmp_path / "cache"), Counting()
    first = cache.cached(builder, sources, AS_OF, config=FeatureConfig(), channels=None)
    again = cache.cached(builder, load_data(sim_data).sources, AS_OF, config=FeatureConfig(), channels=None)
    assert builder.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    pd.testing.assert_frame_equal(first, again)
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 1 and not list((tmp_path / "cache").glob(".*"))
    cache.cached(builder, sources, AS_OF, config=FeatureConfig(active_window_days=200), channels=None)
    assert builder.calls == 2
    cache.cached(builder, sources, AS_OF - pd.Timedelta(days=1), config=FeatureConfig(), channels=None)
    assert builder.calls == 3
    cache.cached(builder, sources, AS_OF, config=FeatureConfig(), channels=["email"])
    assert builder.calls == 4
    FeatureCache.off().cached(builder, sources, AS_OF, config=FeatureConfig(), channels=None)
    assert builder.calls == 5


def test_one_changed_byte_of_an_input_builds_the_table_again(csv_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(csv_data, data)
    cache, builder = FeatureCache(tmp_path / "cache"), Counting()
    before = cache.cached(builder, load_data(data).sources, AS_OF, config=FeatureConfig())
    assert cache.cached(builder, load_data(data).sources, AS_OF, config=FeatureConfig()) is not None
    assert builder.calls == 1
    orders = data / "orders.csv"
    text = orders.read_bytes()
    at = text.index(b"\n", text.index(b"\n") + 1) - 1  # the last digit of the first order's amount
    changed = text[:at] + (b"1" if text[at:at + 1] != b"1" else b"2") + text[at + 1:]
    assert len(changed) == len(text) and sum(a != b for a, b in zip(text, changed)) == 1
    stat = orders.stat()
    orders.write_bytes(changed)
    os.utime(orders, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time: the content decides
    after = cache.cached(builder, load_data(data).sources, AS_OF, config=FeatureConfig())
    assert builder.calls == 2 and len(after) == len(before)


def test_a_rewritten_parquet_input_builds_the_table_again(sim_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sim_data, data)
    cache, builder = FeatureCache(tmp_path / "cache"), Counting()
    cache.cached(builder, load_data(data).sources, AS_OF, config=FeatureConfig())
    assert isinstance(load_data(data).sources["orders"], os.PathLike)  # read by the engine: keyed on its file
    orders = pd.read_parquet(data / "orders.parquet")
    orders.loc[0, "amount"] += 1
    orders.to_parquet(data / "orders.parquet", index=False)
    cache.cached(builder, load_data(data).sources, AS_OF, config=FeatureConfig())
    assert builder.calls == 2


def test_the_key_covers_the_code_and_refuses_a_frame_argument(sim_data, monkeypatch):
    import features.cache

    sources = load_data(sim_data).sources
    key = cache_key(build.features_for_scoring, sources, AS_OF, config=FeatureConfig())
    assert key == cache_key(build.features_for_scoring, sources, AS_OF, config=FeatureConfig())
    monkeypatch.setattr(features.cache, "code_version", lambda: "an edited feature definition")
    assert cache_key(build.features_for_scoring, sources, AS_OF, config=FeatureConfig()) != key
    with pytest.raises(TypeError, match="DataFrame argument cannot key the feature cache"):
        cache_key(build.build_features, sources, [AS_OF], population=pd.DataFrame({"customer_id": ["C1"]}))


def test_a_damaged_entry_is_rebuilt_and_only_the_latest_entries_are_kept(sim_data, tmp_path):
    sources = load_data(sim_data).sources
    cache, builder = FeatureCache(tmp_path / "cache", keep=2), Counting()
    cache.cached(builder, sources, AS_OF, config=FeatureConfig())
    (entry,) = (tmp_path / "cache").glob("*.parquet")
    entry.write_bytes(b"PAR1 cut short")
    frame = cache.cached(builder, sources, AS_OF, config=FeatureConfig())
    assert builder.calls == 2 and len(frame) and pd.read_parquet(entry).shape == frame.shape
    for days in (1, 2, 3):
        cache.cached(builder, sources, AS_OF - pd.Timedelta(days=days), config=FeatureConfig())
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 2


def test_the_training_set_is_read_back_by_a_second_training(sim_data, tmp_path, monkeypatch):
    import features.labels
    from models.train import training_data
    from pipelines.settings import Settings

    calls = []
    real = features.labels.build_training_set

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    counting.__qualname__ = real.__qualname__
    monkeypatch.setattr(features.labels, "build_training_set", counting)
    settings = Settings()
    sources = load_data(sim_data).sources
    first, plan = training_data(sources, horizon_days=90, config=settings.feature_config(),
                                cache=settings.cache.feature_cache(tmp_path))
    second, plan_again = training_data(load_data(sim_data).sources, horizon_days=90, config=settings.feature_config(),
                                       cache=settings.cache.feature_cache(tmp_path))
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "features").glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(first, second)
    assert plan_again.split == plan.split and plan_again.cutoffs == plan.cutoffs
    off = Settings().with_overrides(**{"cache.features": False})
    assert off.cache.feature_cache(tmp_path).folder is None
    training_data(sources, horizon_days=90, config=off.feature_config(), cache=off.cache.feature_cache(tmp_path))
    assert len(calls) == 2


def test_the_scoring_step_uses_the_cache_without_prefect(sim_data, tmp_path, monkeypatch):
    from pipelines.flows import scoring_features_task
    from pipelines.orchestration import orchestrated

    builder = Counting()
    monkeypatch.setattr(build, "features_for_scoring", builder)
    cache = FeatureCache(tmp_path / "cache")
    assert not orchestrated()
    for _ in range(2):
        frame = scoring_features_task(load_data(sim_data).sources, AS_OF, FeatureConfig(), None, cache)
    assert builder.calls == 1 and len(frame)
