"""Figures and tables regenerated from a synthetic aggregated CSV: the files, and what they plot."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from synthetic_runs import N_PARAMS, make_runs

from ficomm.analysis import figures, stats, tables
from ficomm.analysis.aggregate import (
    AnalysisInputError,
    aggregate_runs,
    final_performance,
    load_runs,
)

N_BOOT = 500


@pytest.fixture(scope="module")
def written(grid_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_figures")
    df = load_runs(grid_csv)
    manifest = figures.write_figures(df, out, last_k=5, n_boot=N_BOOT, seed=0)
    tables.write_tables(df, out, last_k=5, n_boot=N_BOOT, seed=0)
    return df, out, manifest


def _raw_mean_curve(df, env, backend, method, hidden):
    """The expected curve, computed straight from the runs' metrics.csv files."""
    col = "eval_return_mean" if env == "predator_prey" else "eval_win_rate"
    sel = df[
        (df.env == env) & (df.backend == backend) & (df.method == method) & (df.hidden == hidden)
    ]
    per_seed = []
    for run in sel["run_dir"].unique():
        m = pd.read_csv(f"{run}/metrics.csv")
        per_seed.append(m.assign(step=(m.env_steps // 10_000) * 10_000).set_index("step")[col])
    return pd.concat(per_seed, axis=1).mean(axis=1)


def test_every_figure_file_is_written(written):
    _, out, manifest = written
    names = {f["name"] for f in manifest["figures"]}
    expected = {
        "curves_predator_prey_h64_native",
        "curves_3s_vs_5z_h64_smax",
        "fig5a_3s_vs_5z_ps_iql_hidden_smax",
        "fig5b_3s_vs_5z_ps_iql_comm_hidden_smax",
        "hidden_3s_vs_5z_nps_iql_smax",
        "hidden_3s_vs_5z_nps_iql_comm_smax",
        *(
            f"hidden_predator_prey_{m}_native"
            for m in ("ps_iql", "ps_iql_comm", "nps_iql", "nps_iql_comm")
        ),
        "final_seeds_predator_prey_native",
        "final_seeds_3s_vs_5z_smax",
    }
    assert names == expected
    assert json.loads((out / "figures.json").read_text())["figures"] == json.loads(
        json.dumps(manifest["figures"])
    )
    for name in names:
        for ext in ("pdf", "png", "csv"):
            assert (out / f"{name}.{ext}").stat().st_size > 0, (name, ext)
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        img = mpimg.imread(out / f"{name}.png")
        assert img.shape[0] >= 400 and img.shape[1] >= 600
        assert img[..., :3].std() > 0.05  # not blank


def test_curve_sidecars_hold_the_mean_over_seeds(written):
    df, out, _ = written
    side = pd.read_csv(out / "curves_predator_prey_h64_native.csv")
    assert set(side["method"]) == {"PS+IQL", "PS+IQL+COMM", "NPS+IQL", "NPS+IQL+COMM"}
    assert set(side["hidden"]) == {64}
    for method, part in side.groupby("method"):
        expect = _raw_mean_curve(df, "predator_prey", "native", method, 64)
        assert part.set_index("eval_step")["mean"].to_numpy() == pytest.approx(expect.to_numpy())
        assert (part["ci_low"] <= part["mean"] + 1e-9).all() and (
            part["mean"] <= part["ci_high"] + 1e-9
        ).all()
        assert (part["n_seeds"] == 3).all()
    fig5a = pd.read_csv(out / "fig5a_3s_vs_5z_ps_iql_hidden_smax.csv")
    assert set(fig5a["method"]) == {"PS+IQL"} and set(fig5a["hidden"]) == {32, 64, 128}
    for hidden, part in fig5a.groupby("hidden"):
        expect = _raw_mean_curve(df, "3s_vs_5z", "smax", "PS+IQL", hidden)
        assert part["mean"].to_numpy() == pytest.approx(expect.to_numpy())


def test_drawn_lines_equal_the_plotted_data(written):
    df, _, _ = written
    final = final_performance(df, 5)
    spec = {
        "name": "fig5b_3s_vs_5z_ps_iql_comm_hidden_smax",
        "kind": "hidden",
        "env": "3s_vs_5z",
        "backend": "smax",
        "method": "PS+IQL+COMM",
    }
    fig, data = figures.make_figure(spec, df, final, n_boot=N_BOOT, last_k=5)
    ax = fig.axes[0]
    assert "SMAX backend" in ax.get_title() and "5(b)" in ax.get_title()
    assert ax.get_xlabel() == "environment steps" and "win rate" in ax.get_ylabel()
    assert ax.get_legend().get_title().get_text() == "GRU hidden size"
    lines = ax.get_lines()
    assert len(lines) == 3
    for line, hidden in zip(lines, data["hidden"].unique(), strict=True):
        assert f"H = {hidden}" in line.get_label()
        expect = _raw_mean_curve(df, "3s_vs_5z", "smax", "PS+IQL+COMM", hidden)
        assert line.get_ydata() == pytest.approx(expect.to_numpy())
        assert line.get_xdata() == pytest.approx(expect.index.to_numpy())


def test_seed_strip_plots_one_point_per_run_with_basins(written):
    df, out, _ = written
    final = final_performance(df, 5)
    spec = {
        "name": "final_seeds_predator_prey_native",
        "kind": "seeds",
        "env": "predator_prey",
        "backend": "native",
    }
    fig, data = figures.make_figure(spec, df, final, n_boot=N_BOOT, last_k=5)
    pp = final[final.env == "predator_prey"]
    assert len(data) == len(pp) == 36
    assert sorted(data["final"]) == pytest.approx(sorted(pp["final"]))
    points = np.concatenate(
        [c.get_offsets()[:, 1] for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    )
    assert sorted(points) == pytest.approx(sorted(pp["final"]))
    # The synthetic grid puts some seeds in the avoidance basin: the strip must show both.
    assert set(data["basin"]) == {"capture", "avoid"}
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} >= {"capture", "avoid"}
    side = pd.read_csv(out / "final_seeds_predator_prey_native.csv")
    assert len(side) == 36 and set(side["config"]).issuperset({"NPS+IQL+COMM H64", "PS+IQL H32"})


def test_backends_are_never_mixed(tmp_path):
    make_runs(tmp_path / "smax", envs=["3s_vs_5z"], hiddens=[64], seeds=[0, 1], backend="smax")
    make_runs(tmp_path / "sc2", envs=["3s_vs_5z"], hiddens=[64], seeds=[0, 1], backend="sc2")
    df = aggregate_runs([tmp_path])
    specs = figures.figure_specs(df)
    names = {s["name"] for s in specs}
    assert {"curves_3s_vs_5z_h64_smax", "curves_3s_vs_5z_h64_sc2"} <= names
    final = final_performance(df, 3)
    table = tables.final_performance_table(final, n_boot=100)
    assert set(zip(table.backend, table.n_seeds, strict=True)) == {("smax", 2), ("sc2", 2)}
    _, data = figures.make_figure(
        next(s for s in specs if s["name"].endswith("h64_sc2")), df, final, n_boot=100
    )
    assert set(data["n_seeds"]) == {2}  # the sc2 curve holds only the sc2 runs


def test_final_performance_table(written):
    df, out, _ = written
    table = pd.read_csv(out / "final_performance.csv")
    assert len(table) == 24
    final = final_performance(df, 5)
    for _, row in table.iterrows():
        runs = final[
            (final.env == row.env) & (final.method == row.method) & (final.hidden == row.hidden)
        ]
        x = runs["final"].to_numpy()
        assert row.n_seeds == 3
        assert row["mean"] == pytest.approx(x.mean())
        assert row.iqm == pytest.approx(stats.iqm(x))
        assert row.ci_low <= row["mean"] <= row.ci_high
        if row.env == "predator_prey":
            basins = [stats.classify_basin(v) for v in x]
            assert [row.basin_capture, row.basin_avoid, row.basin_penalised] == [
                basins.count("capture"),
                basins.count("avoid"),
                basins.count("penalised"),
            ]
        else:
            assert pd.isna(row.basin_capture)
    md = (out / "final_performance.md").read_text()
    assert md.count("\n| ") == 25 and "mean of each run's last 5 evaluations" in md
    tex = (out / "final_performance.tex").read_text()
    assert r"\begin{tabular}" in tex and tex.count(r"\\") == 25 and "NPS+IQL+COMM" in tex


def test_parameter_count_table(written):
    _, out, _ = written
    params = pd.read_csv(out / "param_counts.csv")
    assert list(params.columns) == [
        "env",
        "backend",
        "hidden",
        "PS+IQL",
        "PS+IQL+COMM",
        "NPS+IQL",
        "NPS+IQL+COMM",
    ]
    for _, row in params.iterrows():
        expect = N_PARAMS[(row.env, row.hidden)]
        assert [row["PS+IQL"], row["PS+IQL+COMM"], row["NPS+IQL"], row["NPS+IQL+COMM"]] == list(
            expect
        )
    assert "36,687" in (out / "param_counts.md").read_text()
    assert "36,687" in (out / "param_counts.tex").read_text()


def test_parameter_counts_must_agree_across_seeds(grid_csv):
    df = load_runs(grid_csv)
    df.loc[df.index[0], "n_params"] = 1
    with pytest.raises(AnalysisInputError, match="disagree"):
        tables.param_count_table(df)


def test_team_size_figures(tmp_path):
    from synthetic_runs import team_size

    envs = ("predator_prey", "predator_prey_8", "predator_prey_16")
    make_runs(tmp_path / "runs", envs=envs, hiddens=(64,), seeds=(0, 1, 2, 3))
    df = aggregate_runs([tmp_path / "runs"])
    out = tmp_path / "fig"
    manifest = figures.write_figures(df, out, last_k=5, n_boot=N_BOOT, seed=0)
    scale = {f["statistic"]: f for f in manifest["figures"] if f["kind"] == "scale"}
    assert set(scale) == {"final", "auc", "cost"}
    assert scale["cost"]["name"] == "scale_cost_predator_prey_h64_native"
    assert scale["cost"]["metric"] == "wall_time" and scale["final"]["envs"] == list(envs)
    final = final_performance(df, last_k=5)
    for stat, spec in scale.items():
        img = mpimg.imread(out / f"{spec['name']}.png")
        assert img.shape[0] >= 400 and img[..., :3].std() > 0.05
        assert (out / f"{spec['name']}.pdf").read_bytes().startswith(b"%PDF")
        side = pd.read_csv(out / f"{spec['name']}.csv")
        assert sorted(set(side["team_size"])) == [4, 8, 16] and set(side["n_seeds"]) == {4}
        assert (side["ci_low"] <= side["iqm"]).all() and (side["iqm"] <= side["ci_high"]).all()
        row = side[(side["method"] == "PS+IQL+COMM") & (side["team_size"] == 16)].iloc[0]
        runs = df[(df["env"] == "predator_prey_16") & (df["method"] == "PS+IQL+COMM")]
        if stat == "final":  # per agent: the team return over 16
            want = stats.iqm(final.loc[final["run_dir"].isin(runs["run_dir"]), "final"] / 16)
        elif stat == "cost":  # synthetic runs train at 200 / sqrt(team / 4) env steps a second
            want = 1e3 / (200 / np.sqrt(team_size("predator_prey_16") / 4))
        else:
            continue
        assert row["iqm"] == pytest.approx(want)
    # one team size: no team-size figures (the paper's grids draw what they drew before)
    alone = figures.write_figures(df[df["env"] == "predator_prey_8"], tmp_path / "one", n_boot=50)
    assert not [f for f in alone["figures"] if f["kind"] == "scale"]


def test_channel_figure_sets_attention_beside_the_papers_channels(tmp_path):
    """With ATT runs, one more figure draws the six methods at H 64 (the paper's four-method
    figure is unchanged); without them it is not listed."""
    import json as _json

    from synthetic_runs import write_run_dir

    make_runs(tmp_path / "runs", envs=("predator_prey",), hiddens=(64,), seeds=(0, 1))
    plain = figures.write_figures(aggregate_runs([tmp_path / "runs"]), tmp_path / "f0", n_boot=50)
    assert not [f for f in plain["figures"] if f["kind"] == "channels"]
    for share in ("ps", "nps"):
        for seed in (0, 1):
            d = write_run_dir(
                tmp_path / "runs" / "att" / f"{share}_s{seed}",
                env="predator_prey",
                share=share,
                comm=True,
                hidden=64,
                seed=seed,
                level=20.0,
                extra_config={"channel": "attention"},
            )
            info = _json.loads((d / "run_info.json").read_text())
            (d / "run_info.json").write_text(
                _json.dumps({**info, "method": f"{share.upper()}+IQL+ATT"})
            )
    df = aggregate_runs([tmp_path / "runs"])
    manifest = figures.write_figures(df, tmp_path / "f1", n_boot=50)
    (spec,) = [f for f in manifest["figures"] if f["kind"] == "channels"]
    assert spec["name"] == "channels_predator_prey_h64_native"
    side = pd.read_csv(tmp_path / "f1" / f"{spec['name']}.csv")
    assert set(side["method"]) == {
        "PS+IQL", "PS+IQL+COMM", "NPS+IQL", "NPS+IQL+COMM", "PS+IQL+ATT", "NPS+IQL+ATT",
    }  # fmt: skip
    img = mpimg.imread(tmp_path / "f1" / f"{spec['name']}.png")
    assert img.shape[0] >= 400 and img[..., :3].std() > 0.05
    four = pd.read_csv(tmp_path / "f1" / "curves_predator_prey_h64_native.csv")
    assert set(four["method"]) == {"PS+IQL", "PS+IQL+COMM", "NPS+IQL", "NPS+IQL+COMM"}


def test_table_basins_use_each_team_sizes_avoid_level(tmp_path):
    make_runs(tmp_path / "runs", envs=("predator_prey_16",), hiddens=(64,), seeds=(0, 1, 2))
    df = aggregate_runs([tmp_path / "runs"])
    table = tables.final_performance_table(final_performance(df, last_k=5), n_boot=50)
    counts = table[[f"basin_{b}" for b in stats.BASINS]].astype(int)
    assert (counts.sum(axis=1) == table["n_seeds"]).all()
    assert counts["basin_avoid"].sum() > 0  # seeds at -16, 16 agents' avoid level (not -4)
