"""The CLI the Snakemake rules call, end to end on synthetic runs, and the architecture rule
that the analysis never imports the learner."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
from synthetic_runs import make_runs

from ficomm import cli as ficomm_cli
from ficomm.analysis import cli
from ficomm.analysis.figure_specs import figure_specs


def test_pipeline_end_to_end(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    make_runs(tmp_path / "runs", envs=["predator_prey"], hiddens=[64], seeds=(0, 1))
    csv = tmp_path / "results" / "smoke" / "all_runs.csv"
    pf = tmp_path / "paper_figures"
    assert (
        ficomm_cli.main(["analysis", "aggregate", str(tmp_path / "runs"), "--out", str(csv)]) == 0
    )
    common = ["--runs", str(csv), "--out-dir", str(pf), "--n-boot", "300", "--last-k", "5"]
    assert cli.main(["figures", *common]) == 0
    assert cli.main(["tables", *common]) == 0
    assert cli.main(["claims", *common, "--reference", "config/reference.yaml"]) == 0
    for name in (
        "figures.json",
        "final_performance.csv",
        "final_performance.md",
        "final_performance.tex",
        "param_counts.csv",
        "param_counts.md",
        "param_counts.tex",
        "replication.md",
        "replication.json",
    ):
        assert (pf / name).stat().st_size > 0, name
    manifest = json.loads((pf / "figures.json").read_text())
    for fig in manifest["figures"]:
        assert all((pf / f).exists() for f in fig["files"])
    report = json.loads((pf / "replication.json").read_text())
    assert {c["verdict"] for c in report["claims"]} <= {"too few seeds", "untested"}  # 2 seeds
    assert report["definitions"]["final_performance"] == "mean of each run's last 5 evaluations"
    assert len(pd.read_csv(pf / "final_performance.csv")) == 4

    out = tmp_path / "results" / "smoke" / "publish.json"
    args = [
        "publish",
        "--runs",
        str(csv),
        "--figures-dir",
        str(pf),
        "--report",
        str(pf / "replication.json"),
        "--out",
        str(out),
        "--n-boot",
        "300",
    ]
    assert cli.main(args) == 0
    record = json.loads(out.read_text())
    assert record["mode"] == "offline"
    assert list((tmp_path / "results" / "smoke" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_paper_subcommand_and_errors(tmp_path, capsys):
    make_runs(tmp_path / "runs", envs=["3s_vs_5z"], hiddens=[32], seeds=(0,))
    csv = tmp_path / "all_runs.csv"
    assert cli.main(["aggregate", str(tmp_path / "runs"), "--out", str(csv)]) == 0
    assert (
        cli.main(
            ["paper", "--runs", str(csv), "--out-dir", str(tmp_path / "pf"), "--n-boot", "100"]
        )
        == 0
    )
    assert (tmp_path / "pf" / "replication.md").exists()
    manifest = json.loads((tmp_path / "pf" / "figures.json").read_text())
    # No H 64 runs: no four-method figure, and figure_specs (which the workflow uses to list
    # its outputs) agrees with what was written.
    assert not (tmp_path / "pf" / "curves_3s_vs_5z_h64_smax.png").exists()
    methods = ["PS+IQL", "PS+IQL+COMM", "NPS+IQL", "NPS+IQL+COMM"]
    grid = pd.DataFrame({"env": "3s_vs_5z", "backend": "smax", "method": methods, "hidden": 32})
    assert [f["name"] for f in manifest["figures"]] == [s["name"] for s in figure_specs(grid)]
    assert manifest["skipped"] == []
    assert cli.main(["tables", "--runs", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: aggregated CSV not found" in capsys.readouterr().err
    assert cli.main(["claims", "--runs", str(csv), "--reference", str(tmp_path / "ref.yaml")]) == 2
    assert "ref.yaml: reference file not found" in capsys.readouterr().err


def test_analysis_never_imports_torch():
    code = (
        "import sys\n"
        "import ficomm.analysis.cli, ficomm.analysis.aggregate, ficomm.analysis.figures, "
        "ficomm.analysis.tables, ficomm.analysis.claims, ficomm.analysis.publish, "
        "ficomm.wandb_files\n"
        "assert 'torch' not in sys.modules, 'the analysis imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
