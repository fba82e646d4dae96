"""`churn score` killed with SIGKILL at many points, between the files included, leaves the
output folder showing either the whole previous set or the whole new set, and the next run
cleans what the killed one left and succeeds.

The scorings run as subprocesses against the session's Prefect test server (no temporary
server per run). The kill points come from the test-only hook ``CHURN_TEST_KILL_AT=n``
(``models.history.step_done``: the process kills itself at the n-th step of writing a set)
and from kills at a random moment after the run opened its staging folder."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models.history import SET_NAMES, STAGING

A, B, C = "2025-10-06", "2025-10-13", "2025-10-20"


# A small fork server: it imports the pipeline once, then forks one child per `churn score`
# (the child runs the command line exactly as the `churn` script does), so a run costs the
# scoring and not the ~7 s of imports; it reports each child's pid and exit status.
FORK_SERVER = r"""
import json, os, sys
import pipelines.cli, pipelines.flows
for line in sys.stdin:
    args, env = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)  # the child's output goes to the log, not to the protocol
        os.environ.update(env)
        code = 1
        try:
            pipelines.cli.app(args, prog_name="churn")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    print("pid", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("status", -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""


class Run:
    def __init__(self, server: subprocess.Popen, args: list[str], env: dict[str, str]):
        self.server = server
        server.stdin.write(json.dumps([args, env]) + "\n")
        server.stdin.flush()
        self.pid = int(self._line("pid"))
        self.code = None

    def _line(self, word: str) -> str:
        line = self.server.stdout.readline()
        assert line.startswith(word + " "), f"fork server said {line!r}"
        return line.split()[1]

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if self.code is None:
            self.code = int(self._line("status"))
        return self.code


@pytest.fixture(scope="module")
def runner(trained, sim_data, tmp_path_factory, prefect_harness):
    from prefect.settings import get_current_settings

    _, home = trained
    folder = tmp_path_factory.mktemp("kill")
    config = folder / "config.yaml"
    config.write_text("registry: {model_name: e2e, experiment: e2e}\n")
    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    env.pop("CHURN_TEST_KILL_AT", None)
    out = folder / "out"
    log = open(folder / "runs.log", "w")
    server = subprocess.Popen([sys.executable, "-c", FORK_SERVER], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)

    def start(as_of: str, kill_at: int | None = None) -> Run:
        args = ["score", "--data", str(sim_data), "--out", str(out), "--as-of", as_of, "--config", str(config),
                "--home", str(home)]
        return Run(server, args, {"CHURN_TEST_KILL_AT": str(kill_at or "")})
    yield start, out, folder / "runs.log"
    server.stdin.close()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def shown(out: Path) -> dict[str, str | None]:
    """Every file of the set as OUT shows it (a name that does not resolve: None)."""
    files = {}
    for name in SET_NAMES:
        path = out / name
        if path.is_dir():
            files |= {p.relative_to(out).as_posix(): digest(p) for p in sorted(path.rglob("*")) if p.is_file()}
        else:
            files[name] = digest(path) if path.is_file() else None
    return files


def check_one_set(out: Path, old: dict, as_of: str) -> str:
    """'old' when OUT shows exactly the previous set, 'new' when it shows a complete set of
    ``as_of`` whose every file is the one its lineage.json lists; fails otherwise."""
    now = shown(out)
    if now == old:
        return "old"
    doc = json.loads((out / "lineage.json").read_text())
    listed = {f["path"]: f["sha256"] for f in doc["wrote"]["files"]}
    assert {k: v for k, v in now.items() if k != "lineage.json"} == listed, "OUT shows a mix of two sets"
    assert doc["as_of"] == as_of and json.loads((out / "summary.json").read_text())["as_of"] == as_of
    assert all(now[n] is not None for n in SET_NAMES if n != "validation") and any(k.startswith("validation/") for k in now)
    return "new"


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp") or STAGING.match(p.name)
            or p.name.startswith((".replaced-", ".set-"))]


def test_a_killed_scoring_leaves_the_old_set_or_the_new_one(runner):
    start, out, log = runner
    assert start(A).wait() == 0, log.read_text()[-3000:]
    old = shown(out)
    kept_a = tree(out / "history" / A)
    assert not leftovers(out) and all(v is not None for v in old.values())
    rng = np.random.default_rng(0)
    # (as_of, the step to die at, or None for a kill at a random moment, what OUT must show after)
    plan = [(B, 2, "old"),   # the CSV list written in the staging folder, nothing else
            (B, 5, "old"),   # between the files: both lists written, the workbook not yet
            (B, 8, "old"),   # lineage.json written, nothing published
            (B, 9, "old"),   # the set moved into history/B, OUT still on A
            (B, 9, "old"),   # history/B replaced by a new set of B in one exchange, OUT still on A
            (B, 11, "new"),  # OUT switched to B; its cleanup not done
            (C, None, None), (C, None, None)]
    for as_of, kill_at, expected in plan:
        run = start(as_of, kill_at)
        if kill_at is None:
            deadline = time.monotonic() + 120
            while not any(p.name.startswith(f".staging-{run.pid}-") for p in out.iterdir()):
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0, 5)))
            run.kill()
        code = run.wait()
        assert code in (-signal.SIGKILL, 0), log.read_text()[-3000:]
        if kill_at is not None:
            assert code == -signal.SIGKILL, f"step {kill_at} never reached: {log.read_text()[-3000:]}"
        state = check_one_set(out, old, as_of)
        assert expected is None or state == expected, (as_of, kill_at, state)
        if state == "new":
            old = shown(out)
        # what earlier killed runs left was cleaned by this run; only its own staging may remain
        assert all(str(run.pid) in p.name for p in leftovers(out) if STAGING.match(p.name)), leftovers(out)
        assert tree(out / "history" / A) == kept_a
    assert start(C).wait() == 0, log.read_text()[-3000:]
    assert check_one_set(out, old, C) == "new" and not leftovers(out)
    assert sorted(p.name for p in (out / "history").iterdir()) == [A, B, C]
