"""W&B publishing: the offline run is read back from its .wandb file; the reference pull is a
pure conversion tested on stand-ins shaped like wandb.Api() runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import wandb
from synthetic_runs import make_runs

from ficomm.analysis import figures
from ficomm.analysis.aggregate import AnalysisInputError, aggregate_runs
from ficomm.analysis.claims import replication_report, write_report
from ficomm.analysis.publish import api_runs_to_frame, publish, resolve_mode
from ficomm.analysis.wandb_report import build_report, configuration_groups, report_definition
from ficomm.wandb_files import WandbFileError, read_logged_table, read_offline_run


class StandInApiRun:
    """Shaped like wandb.apis.public.Run: .id, .path, .config, .scan_history()."""

    def __init__(self, run_id, config, history):
        self.id = run_id
        self.path = ["someone", "reference", run_id]
        self.config = config
        self._history = history

    def scan_history(self):
        return iter(self._history)


class StandInApi:
    """Shaped like wandb.Api(): .runs(path) -> iterable of runs."""

    def __init__(self, runs):
        self._runs = runs
        self.asked = []

    def runs(self, path):
        self.asked.append(path)
        return self._runs


def _reference_runs():
    runs = []
    for seed in (0, 1):
        for comm in (False, True):
            config = {  # the public API may wrap values as {"value": ...}
                "env": {"value": "predator_prey"},
                "backend": "native",
                "share": "nps",
                "comm": comm,
                "hidden": 64,
                "seed": seed,
                "eval_interval": 10_000,
            }
            history = [{"_step": 0, "train_loss": 1.0}]  # not an evaluation: skipped
            history += [
                {
                    "_step": i + 1,
                    "env_steps": 10_000 * i + 7,
                    "eval_return_mean": -4.0 + i + 5 * comm,
                }
                for i in range(12)
            ]
            runs.append(StandInApiRun(f"r{seed}{int(comm)}", config, history))
    return runs


def test_api_runs_to_frame():
    df = api_runs_to_frame(_reference_runs())
    assert df["run_dir"].nunique() == 4 and len(df) == 4 * 12
    assert set(df["source"]) == {"reference"} and set(df["variant"]) == {""}
    assert set(df["method"]) == {"NPS+IQL", "NPS+IQL+COMM"}
    assert set(df["env"]) == {"predator_prey"}  # unwrapped from {"value": ...}
    assert df["eval_step"].tolist()[:3] == [0, 10_000, 20_000]
    assert "train_loss" not in df or df["train_loss"].isna().all()
    renamed = api_runs_to_frame(
        [StandInApiRun("x", _reference_runs()[0].config, [{"env_steps": 0, "test_return": 3.0}])],
        column_map={"test_return": "eval_return_mean"},
    )
    assert renamed["eval_return_mean"].tolist() == [3.0]
    assert set(df["channel"]) == {"concat"}  # logged before `channel` existed: the paper's
    attention = {**_reference_runs()[1].config, "channel": "attention"}
    att = api_runs_to_frame(
        [StandInApiRun("a", attention, [{"env_steps": 0, "eval_return_mean": 1}])]
    )
    assert att["method"].tolist() == ["NPS+IQL+ATT"] and att["channel"].tolist() == ["attention"]
    with pytest.raises(AnalysisInputError, match="someone/reference/bad: config keys missing"):
        api_runs_to_frame([StandInApiRun("bad", {"env": "predator_prey"}, [])])


def test_resolve_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode(None) == "offline"
    assert resolve_mode("online") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("online") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "sideways")
    with pytest.raises(AnalysisInputError, match="mode"):
        resolve_mode(None)


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("pub")
    make_runs(root / "runs", envs=["predator_prey"], hiddens=[64], seeds=(0, 1))
    df = aggregate_runs([root / "runs"])
    figures.write_figures(df, root / "pf", n_boot=200)
    report = replication_report(df, n_boot=200)
    write_report(report, root / "pf")
    return root, df, json.loads((root / "pf" / "replication.json").read_text())


def test_offline_publish_is_read_back(small_results, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    root, df, report = small_results
    # A small row limit proves the table is not cut at wandb.Table.MAX_ROWS.
    monkeypatch.setattr(wandb.Table, "MAX_ROWS", 10)
    api = StandInApi(_reference_runs())
    rec = publish(
        df,
        root / "pf",
        report,
        wandb_dir=tmp_path,
        mode="offline",
        reference_project="someone/reference",
        api=api,
        n_boot=200,
    )
    assert wandb.Table.MAX_ROWS == 10
    assert api.asked == ["someone/reference"] and rec["reference_runs"] == 4
    assert rec["mode"] == "offline"
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1 and rec["run_id"] in files[0].name

    run = read_offline_run(files[0].parent)
    assert run["job_type"] == "replication" and run["project"] == "ficomm"
    every_claim = report["claims"] + report["beyond_paper"]
    assert [c["id"] for c in every_claim] == [1, 2, 3, 4, 5, 6, 7, 8]
    for c in every_claim:
        assert run["summary"][f"claim_{c['id']}_verdict"] == c["verdict"]
    logged = run["history"][0]
    all_runs = read_logged_table(files[0], logged["all_runs"])
    assert len(all_runs) == len(df) + 4 * 12 > 10
    assert set(all_runs["source"]) == {"ficomm", "reference"}
    full = pd.read_csv(files[0].parent / "files" / "all_runs.csv")  # every column, saved as a file
    assert len(full) == len(all_runs) and set(df.columns) <= set(full.columns)
    claims = read_logged_table(files[0], logged["claims"])
    assert claims["verdict"].tolist() == [c["verdict"] for c in every_claim]
    assert claims["beyond_paper"].tolist() == [False] * 5 + [True] * 3
    final = read_logged_table(files[0], logged["final_performance"])
    ref_row = final[(final["source"] == "reference") & (final["method"] == "NPS+IQL+COMM")]
    # Final performance = mean of the last 10 of the 12 evaluations, i = 2..11.
    assert ref_row["mean"].iloc[0] == pytest.approx(sum(-4 + i + 5 for i in range(2, 12)) / 10)
    pngs = sorted(p.stem for p in (root / "pf").glob("*.png"))
    images = {k.removeprefix("figures/"): v for k, v in logged.items() if k.startswith("figures/")}
    # H 64 only: the four-method curves and the per-seed strip (a one-level sweep is not drawn)
    assert sorted(images) == pngs and len(pngs) == 3  # the curves, the seeds, the listening test
    assert all(v["_type"] == "image-file" for v in images.values())
    assert run["config"]["definitions"]["min_seeds"] == 3
    groups = read_logged_table(files[0], logged["configuration_groups"])
    assert len(groups) == 4 and run["summary"]["configuration_groups"] == 4
    assert set(groups["seeds"]) == {"0 1"} and groups["group"].is_unique
    assert rec["report"]["url"] is None  # offline: the Report is defined, not saved
    assert json.loads(Path(rec["report"]["definition"]).read_text())["blocks"]


def test_wandb_report_definition(small_results):
    """Offline, the W&B Report is built and checked: the verdict table, then one panel grid
    per env and hidden size whose run set selects the training runs by config keys that
    wandb-workspaces' own filter parser reads, grouped by method, plotting the env's metric."""
    from wandb_workspaces import expr

    _, df, report = small_results
    groups = configuration_groups(df).assign(preset="p")  # as if trained by preset p
    report_obj = build_report(report, groups, project="ficomm", entity="someone")
    d = report_definition(report_obj)
    assert d["project"] == "ficomm" and d["entity"] == "someone"
    kinds = [(b["type"], b.get("text")) for b in d["blocks"]]
    verdicts = d["blocks"][kinds.index(("H1", "Verdicts")) + 1]
    assert verdicts["type"] == "MarkdownBlock"
    verdicts = verdicts["text"]
    for c in report["claims"]:
        assert f"| {c['id']} | **{c['verdict']}** |" in verdicts
    beyond = d["blocks"][kinds.index(("H2", "Beyond the paper (not claims of the paper)")) + 1]
    assert all(f"| {c['id']} | **" in beyond["text"] for c in report["beyond_paper"])
    grids = [b for b in d["blocks"] if b["type"] == "PanelGrid"]
    assert len(grids) == 1  # predator_prey x H 64
    (runset,) = grids[0]["runsets"]
    assert runset["groupby"] == ["config.method"] and runset["project"] == "ficomm"
    parsed = expr.expr_to_filters(runset["filters"])
    leaves = {f.key.name: f.value for f in parsed.filters}
    assert parsed.op == "AND" and {f.key.section for f in parsed.filters} == {"config"}
    assert leaves == {"preset": ["p"], "env": "predator_prey", "hidden": 64}
    (plot,) = grids[0]["panels"]
    assert (
        plot["type"] == "LinePlot"
        and plot["x"] == "env_steps"
        and plot["y"] == ["eval_return_mean"]
    )
    assert plot["groupby_aggfunc"] == "mean" and plot["groupby_rangefunc"] == "stderr"
    table = d["blocks"][-1]["text"]
    assert all(f"| `{g}` |" in table for g in groups["group"])
    with pytest.raises(AnalysisInputError, match="no ficomm runs"):
        build_report(report, groups.iloc[:0], project="ficomm", entity=None)


def test_reader_rejects_other_files(tmp_path):
    p = tmp_path / "run-x.wandb"
    p.write_bytes(b"not a wandb file")
    with pytest.raises(WandbFileError, match="bad header"):
        read_offline_run(p)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WandbFileError, match="no run-"):
        read_offline_run(tmp_path / "empty")


def test_disabled_mode_logs_nothing(small_results, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    root, df, report = small_results
    rec = publish(df, root / "pf", report, wandb_dir=tmp_path, mode="disabled", n_boot=100)
    assert rec["mode"] == "disabled" and rec["run_dir"] is None
    assert not list(tmp_path.glob("wandb/offline-run-*"))
    every_claim = report["claims"] + report["beyond_paper"]
    assert rec["logged"]["verdicts"] == {str(c["id"]): c["verdict"] for c in every_claim}


def test_online_publish_without_a_key_is_one_line(small_results, tmp_path):
    """No API key (and no reachable W&B server): one line saying what and what to do, exit 2,
    and no record written."""
    import os
    import subprocess
    import sys

    root, df, _ = small_results
    table = tmp_path / "all_runs.csv"
    df.to_csv(table, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_BASE_URL="http://127.0.0.1:9", WANDB_INIT_TIMEOUT="20")
    out = tmp_path / "wandb_publish.json"
    res = subprocess.run(
        [sys.executable, "-m", "ficomm.analysis.cli", "publish", "--runs", str(table)]
        + ["--figures-dir", str(root / "pf"), "--report", str(root / "pf" / "replication.json")]
        + ["--wandb-mode", "online", "--wandb-dir", str(tmp_path / "w"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "W&B could not start the online publish run" in lines[0], lines
    assert "wandb login" in lines[0] and not out.exists()
