"""prefect.yaml declares the deployments `churn serve` serves: the same names, entry flows,
default schedules and chaining triggers."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipelines.deploy import AFTER, DEPLOYMENTS, ENTRY_FLOWS
from pipelines.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_mirrors_the_served_deployments():
    declared = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert set(declared) == set(DEPLOYMENTS.values())
    schedule = Settings().schedule
    for job, name in DEPLOYMENTS.items():
        d = declared[name]
        path, func = d["entrypoint"].split(":")
        assert (ROOT / path).is_file() and func == ENTRY_FLOWS[job].fn.__name__
        assert d["schedules"] == [{"cron": getattr(schedule, job), "timezone": schedule.timezone}]
        related = [t["match_related"]["prefect.resource.name"] for t in d.get("triggers", [])]
        assert related == ([DEPLOYMENTS[AFTER[job]]] if job in AFTER else [])
