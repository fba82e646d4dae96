"""Deployments and schedules, declared once: `churn serve` serves them, `prefect.yaml` mirrors
them for teams that run work pools and workers.

Three deployments, each of a small entry flow that reads the settings file at run time and
calls the library flow: ``churn-train`` (monthly retraining), ``churn-score`` (weekly scoring
into ``score.out_dir``) and ``churn-monitor``. Their cron schedules and time zone come from the
config's ``schedule:`` section; their parameters (the config file, the data folder, the run
folder, the lists folder) from the config and the flags. A completed ``churn-train`` run
starts ``churn-score`` (a deployment trigger on the flow run's Completed event), and a
completed ``churn-score`` run starts ``churn-monitor``, so a new champion is used the same day.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from pipelines.settings import Settings, load_settings

DEPLOYMENTS = {"train": "churn-train", "score": "churn-score", "monitor": "churn-monitor"}
AFTER = {"score": "train", "monitor": "score"}  # each runs when the other completes


def _settings(config: str | None) -> Settings:
    return load_settings(Path(config) if config else None)


def _data(data: str | None) -> Path | None:
    return Path(data) if data else None


@flow(name="scheduled-train")
def scheduled_train(config: str | None = None, data: str | None = None, home: str = ".churn") -> dict:
    """Retrain on the latest data (the ``train`` flow), register, promote through the gate."""
    from pipelines.flows import train_flow

    result = train_flow(_data(data), _settings(config), Path(home))
    return {"version": result.version, "promoted": result.promoted, "test_roc_auc": result.metrics.get("test_roc_auc")}


@flow(name="scheduled-score")
def scheduled_score(config: str | None = None, data: str | None = None, home: str = ".churn",
                    out: str | None = None) -> dict:
    """Score the latest date with the champion into ``out`` (the ``score`` flow)."""
    from pipelines.flows import score_flow

    settings = _settings(config)
    result = score_flow(_data(data), Path(_out(out, settings)), settings, Path(home))
    return {"as_of": str(result.as_of.date()), "rows": result.rows, "model_version": result.model_version}


@flow(name="scheduled-monitor")
def scheduled_monitor(config: str | None = None, data: str | None = None, home: str = ".churn",
                      out: str | None = None) -> dict:
    """Monitor the champion on the lists kept in ``out`` (the ``monitor`` flow)."""
    from pipelines.flows import monitor_flow

    settings = _settings(config)
    result = monitor_flow(_data(data), Path(_out(out, settings)), settings, Path(home))
    return {"as_of": str(result.as_of.date()), "alerts": result.alerts}


def _out(out: str | None, settings: Settings) -> str:
    if out:
        return out
    if settings.score.out_dir is None:
        raise ValueError("no lists folder: set score.out_dir in the config or give --out to churn serve")
    return str(settings.score.out_dir)


ENTRY_FLOWS = {"train": scheduled_train, "score": scheduled_score, "monitor": scheduled_monitor}


def deployment_parameters(settings: Settings, *, config: Path | None, data: Path | None, home: Path,
                          out: Path | None) -> dict[str, dict]:
    """Each deployment's parameters, with absolute paths (a served run may start in another folder)."""
    base = {"config": str(Path(config).resolve()) if config else None,
            "data": str(Path(data).resolve()) if data else None, "home": str(Path(home).resolve())}
    lists = out if out is not None else settings.score.out_dir
    listed = {"out": str(Path(lists).resolve())} if lists is not None else {}
    return {"train": base, "score": base | listed, "monitor": base | listed}


def build_deployments(settings: Settings, *, config: Path | None, data: Path | None, home: Path, out: Path | None) -> list:
    """The three ``RunnerDeployment``s with their schedules, parameters and chaining triggers."""
    params = deployment_parameters(settings, config=config, data=data, home=home, out=out)
    deployments = []
    for job, name in DEPLOYMENTS.items():
        triggers = []
        if job in AFTER:
            triggers.append(DeploymentEventTrigger(
                name=f"{name} after {DEPLOYMENTS[AFTER[job]]}", expect={"prefect.flow-run.Completed"},
                match_related={"prefect.resource.role": "deployment", "prefect.resource.name": DEPLOYMENTS[AFTER[job]]}))
        deployments.append(ENTRY_FLOWS[job].to_deployment(
            name=name, schedules=[Cron(getattr(settings.schedule, job), timezone=settings.schedule.timezone)],
            parameters=params[job], triggers=triggers, tags=["churn-risk"],
            description=(ENTRY_FLOWS[job].description or "").strip()))
    return deployments
