"""Run directories -> tidy table: columns, values, errors naming the path, variants."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from synthetic_runs import make_runs, write_run_dir

from ficomm.analysis import cli
from ficomm.analysis.aggregate import (
    METHODS,
    AnalysisInputError,
    aggregate_runs,
    final_performance,
    find_run_dirs,
    load_runs,
)
from ficomm.analysis.tables import final_performance_table, param_count_table


def test_tidy_table_has_every_evaluation_and_the_config_columns(grid_root, grid_csv):
    df = load_runs(grid_csv)
    run_dirs = find_run_dirs([grid_root])
    assert len(run_dirs) == 2 * 4 * 3 * 3
    assert df["run_dir"].nunique() == len(run_dirs)
    assert len(df) == sum(len(pd.read_csv(d / "metrics.csv")) for d in run_dirs)
    for col in (
        "env",
        "backend",
        "share",
        "comm",
        "hidden",
        "seed",
        "method",
        "n_params",
        "q_input_width",
        "budget",
        "eval_step",
        "env_steps",
        "eval_return_mean",
        "eval_win_rate",
        "env_args.penalty",
        "source",
        "variant",
    ):
        assert col in df.columns, col
    # Spot-check one run against its files.
    d = run_dirs[5]
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    info = json.loads((d / "run_info.json").read_text())
    rows = df[df["run_dir"] == str(d)]
    assert (rows["hidden"] == cfg["hidden"]).all() and (rows["seed"] == cfg["seed"]).all()
    assert (rows["n_params"] == info["n_params"]).all()
    assert (rows["method"] == info["method"]).all()
    assert rows["eval_return_mean"].tolist() == pytest.approx(
        pd.read_csv(d / "metrics.csv")["eval_return_mean"].tolist()
    )
    assert set(df["variant"]) == {""} and set(df["source"]) == {"ficomm"}
    assert df["eval_step"].le(df["env_steps"]).all()
    assert (df["eval_step"] % 10_000 == 0).all()
    assert set(df["method"]) == {"PS+IQL", "PS+IQL+COMM", "NPS+IQL", "NPS+IQL+COMM"}


def test_explicit_dirs_and_root_agree(grid_root):
    dirs = find_run_dirs([grid_root])[:4]
    a = aggregate_runs(dirs)
    b = aggregate_runs([d.parent for d in dirs[:1]] + dirs[1:])  # a parent is a root too
    assert set(a["run_dir"]) <= set(b["run_dir"])


def test_final_performance_is_the_mean_of_the_last_k(grid_csv):
    df = load_runs(grid_csv)
    final = final_performance(df, last_k=4)
    assert len(final) == df["run_dir"].nunique()
    for _, r in final.sample(6, random_state=0).iterrows():
        m = pd.read_csv(f"{r['run_dir']}/metrics.csv")
        col = "eval_return_mean" if r["env"] == "predator_prey" else "eval_win_rate"
        assert r["final"] == pytest.approx(m[col].tail(4).mean())
        assert r["metric"] == col


@pytest.fixture
def one_run(tmp_path):
    return write_run_dir(
        tmp_path / "r", env="predator_prey", share="nps", comm=True, hidden=64, seed=0, level=5.0
    )


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("metrics.csv", None, "metrics.csv: missing"),
        ("config.yaml", None, "config.yaml: missing"),
        ("run_info.json", None, "run_info.json: missing"),
        ("config.yaml", "env: [unclosed", "config.yaml: corrupt YAML"),
        ("run_info.json", "{not json", "run_info.json: corrupt JSON"),
        ("metrics.csv", "episodes,grad_steps\n1,2\n", "columns missing: ['env_steps'"),
        ("metrics.csv", "env_steps,eval_return_mean\n", "no evaluation rows"),
        ("metrics.csv", "env_steps,eval_return_mean\n0,abc\n", "not numeric"),
        ("config.yaml", "env: predator_prey\n", "missing keys"),
    ],
)
def test_bad_run_dir_errors_name_the_path(one_run, name, content, expect):
    path = one_run / name
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(AnalysisInputError) as e:
        aggregate_runs([one_run])
    assert str(path) in str(e.value) or str(one_run) in str(e.value)
    assert expect in str(e.value)


def test_method_label_must_agree_with_config(one_run):
    info = json.loads((one_run / "run_info.json").read_text())
    info["method"] = "PS+IQL"
    (one_run / "run_info.json").write_text(json.dumps(info))
    with pytest.raises(AnalysisInputError, match="disagrees with config.yaml"):
        aggregate_runs([one_run])


def test_backend_in_metrics_must_agree_with_config(one_run):
    path = one_run / "metrics.csv"
    metrics = pd.read_csv(path)
    assert (aggregate_runs([one_run])["backend"] == metrics["backend"].iloc[0]).all()
    metrics["backend"] = "sc2" if metrics["backend"].iloc[0] != "sc2" else "smax"
    metrics.to_csv(path, index=False)
    with pytest.raises(AnalysisInputError, match="backend .* disagrees with config.yaml"):
        aggregate_runs([one_run])


def test_duplicate_seed_is_refused(one_run, tmp_path):
    shutil.copytree(one_run, tmp_path / "copy")
    with pytest.raises(AnalysisInputError, match="same configuration and seed") as e:
        aggregate_runs([one_run, tmp_path / "copy"])
    assert "copy" in str(e.value)


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(AnalysisInputError, match="no such run directory"):
        aggregate_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisInputError, match="no run directories below"):
        aggregate_runs([tmp_path / "empty"])


def test_ablation_runs_get_a_variant_label(tmp_path):
    make_runs(tmp_path, envs=["3s_vs_5z"], hiddens=[64], seeds=[0, 1])
    write_run_dir(
        tmp_path / "ablation",
        env="3s_vs_5z",
        share="nps",
        comm=True,
        hidden=64,
        seed=0,
        level=0.5,
        extra_config={"msg_hidden": 32},
    )
    df = aggregate_runs([tmp_path])
    per_run = df.drop_duplicates("run_dir").set_index("run_dir")
    assert per_run.loc[str(tmp_path / "ablation"), "variant"] == "msg_hidden=32"
    assert (per_run.drop(str(tmp_path / "ablation"))["variant"] == "").all()


def test_attention_runs_are_a_method_of_their_own(tmp_path):
    """Runs written before `channel` existed read as concat, keep their label and no variant;
    an attention run is 'NPS+IQL+ATT', never mixed into NPS+IQL+COMM nor marked a variant."""
    make_runs(tmp_path, envs=["predator_prey"], hiddens=[64], seeds=[0, 1])
    att = write_run_dir(
        tmp_path / "att",
        env="predator_prey",
        share="nps",
        comm=True,
        hidden=64,
        seed=0,
        level=0.5,
        extra_config={"channel": "attention"},
    )
    info = json.loads((att / "run_info.json").read_text())
    (att / "run_info.json").write_text(json.dumps({**info, "method": "NPS+IQL+ATT"}))
    per_run = aggregate_runs([tmp_path]).drop_duplicates("run_dir").set_index("run_dir")
    assert per_run.loc[str(att), "method"] == "NPS+IQL+ATT"
    assert (per_run["variant"] == "").all()
    others = per_run.drop(str(att))
    assert (others["channel"] == "concat").all()
    assert "NPS+IQL+ATT" not in set(others["method"])
    assert sorted(set(others["method"])) == sorted(METHODS)
    df = aggregate_runs([tmp_path])
    assert list(param_count_table(df).columns)[-5:] == [*METHODS, "NPS+IQL+ATT"]
    table = final_performance_table(final_performance(df), n_boot=100)
    assert list(table["method"]) == [*METHODS, "NPS+IQL+ATT"]  # its own row, after the paper's
    # a stated label that disagrees with the channel is refused
    (att / "run_info.json").write_text(json.dumps(info))
    with pytest.raises(AnalysisInputError, match="channel=attention"):
        aggregate_runs([att])


def test_incomplete_run_is_flagged(tmp_path):
    d = write_run_dir(
        tmp_path / "r", env="predator_prey", share="ps", comm=False, hidden=32, seed=0, level=1.0
    )
    m = pd.read_csv(d / "metrics.csv")
    m.head(5).to_csv(d / "metrics.csv", index=False)
    df = aggregate_runs([d])
    assert not df["run_complete"].any()
    assert np.array_equal(df["eval_index"], np.arange(5))


def test_cli_aggregate_writes_csv_and_reports_errors(one_run, tmp_path, capsys):
    out = tmp_path / "res" / "all_runs.csv"
    assert cli.main(["aggregate", str(one_run), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == len(pd.read_csv(one_run / "metrics.csv"))
    (one_run / "metrics.csv").unlink()
    assert cli.main(["aggregate", str(one_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ficomm analysis aggregate: error:" in err and str(one_run / "metrics.csv") in err


def test_load_runs_rejects_a_non_aggregated_csv(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(AnalysisInputError, match="not an aggregated table"):
        load_runs(p)
    with pytest.raises(AnalysisInputError, match="run `aggregate` first"):
        load_runs(tmp_path / "missing.csv")
