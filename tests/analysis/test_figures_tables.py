"""Figures and tables regenerated from a synthetic aggregated CSV: the files, and what they plot."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
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


def _raw_seed_curves(df, env, backend, method, hidden):
    """Every seed's curve (one column each), read straight from the runs' metrics.csv files."""
    col = "eval_return_mean" if env == "predator_prey" else "eval_win_rate"
    sel = df[
        (df.env == env) & (df.backend == backend) & (df.method == method) & (df.hidden == hidden)
    ]
    per_seed = []
    for run in sel["run_dir"].unique():
        m = pd.read_csv(f"{run}/metrics.csv")
        per_seed.append(m.assign(step=(m.env_steps // 10_000) * 10_000).set_index("step")[col])
    return pd.concat(per_seed, axis=1)


def _raw_iqm_curve(df, env, backend, method, hidden):
    """The expected IQM curve: the IQM over seeds at every evaluation step."""
    return _raw_seed_curves(df, env, backend, method, hidden).apply(stats.iqm, axis=1)


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
        "comm_gain_hidden_predator_prey_native",
        "comm_gain_hidden_3s_vs_5z_smax",
        "listening_predator_prey_native",
        "listening_3s_vs_5z_smax",
    }
    assert names == expected
    assert json.loads((out / "figures.json").read_text())["figures"] == json.loads(
        json.dumps(manifest["figures"])
    )
    for name in names:
        for ext in ("pdf", "png", "csv", "rst"):
            assert (out / f"{name}.{ext}").stat().st_size > 0, (name, ext)
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        img = mpimg.imread(out / f"{name}.png")
        assert img.shape[0] >= 400 and img.shape[1] >= 600
        assert img[..., :3].std() > 0.05  # not blank


def test_curve_sidecars_hold_the_iqm_its_ci_and_every_seed(written):
    df, out, _ = written
    side = pd.read_csv(out / "curves_predator_prey_h64_native.csv")
    assert set(side["method"]) == {"PS+IQL", "PS+IQL+COMM", "NPS+IQL", "NPS+IQL+COMM"}
    assert set(side["hidden"]) == {64}
    assert [c for c in side.columns if c.startswith("seed")] == ["seed0", "seed1", "seed2"]
    for method, part in side.groupby("method"):
        seeds = _raw_seed_curves(df, "predator_prey", "native", method, 64)
        expect = _raw_iqm_curve(df, "predator_prey", "native", method, 64)
        assert part.set_index("eval_step")["iqm"].to_numpy() == pytest.approx(expect.to_numpy())
        assert part[["seed0", "seed1", "seed2"]].to_numpy() == pytest.approx(seeds.to_numpy())
        assert (part["ci_low"] <= part["iqm"] + 1e-9).all() and (
            part["iqm"] <= part["ci_high"] + 1e-9
        ).all()
        assert (part["n_seeds"] == 3).all()
        # the band is the report's CI of the IQM at each step
        row = part.iloc[7]
        _, lo, hi = stats.stratified_bootstrap_iqm(
            row[["seed0", "seed1", "seed2"]].to_numpy(dtype=float), n_boot=N_BOOT, seed=0
        )
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
    fig5a = pd.read_csv(out / "fig5a_3s_vs_5z_ps_iql_hidden_smax.csv")
    assert set(fig5a["method"]) == {"PS+IQL"} and set(fig5a["hidden"]) == {32, 64, 128}
    for hidden, part in fig5a.groupby("hidden"):
        expect = _raw_iqm_curve(df, "3s_vs_5z", "smax", "PS+IQL", hidden)
        assert part["iqm"].to_numpy() == pytest.approx(expect.to_numpy())


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
    title = fig.get_suptitle()
    assert "SMAX backend" in title and "5(b)" in title and "IQM" in title
    assert ax.get_xlabel() == "environment steps" and "win rate" in ax.get_ylabel()
    assert fig.legends[0].get_title().get_text() == "GRU hidden size"
    lines = [line for line in ax.get_lines() if line.get_gid() == "iqm"]
    assert len(lines) == 3
    for line, hidden in zip(lines, data["hidden"].unique(), strict=True):
        assert f"H = {hidden}" in line.get_label()
        assert line.get_color() == figures.HIDDEN_COLORS[hidden]
        expect = _raw_iqm_curve(df, "3s_vs_5z", "smax", "PS+IQL+COMM", hidden)
        assert line.get_ydata() == pytest.approx(expect.to_numpy())
        assert line.get_xdata() == pytest.approx(expect.index.to_numpy())
    # 3 seeds per hidden size: three thin seed curves and one band each
    assert len([line for line in ax.get_lines() if line.get_gid() == "seed"]) == 9
    assert len([c for c in ax.collections if c.get_gid() == "band"]) == 3
    # the threshold of the report (win rate > 0.5) is drawn; 3s_vs_5z has no avoid level
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_gid() == "level"] == [0.5]


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
    assert {t.get_text() for t in fig.legends[0].get_texts()} >= {"capture (seed)", "avoid (seed)"}
    levels = [line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_gid() == "level"]
    assert levels == [-4.0, -3.0]  # the avoid level and the report's threshold
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


def _assert_title_inside_saved_figure(fig, path):
    """The figure's (sup)title lies inside what `save_figure` writes, by the renderer's own
    extents, and the saved PNG is exactly that region; no ink touches the PNG's border."""
    figures.save_figure(fig, path, dpi=100)
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle if fig._suptitle is not None else fig.axes[0].title
    assert title.get_text()
    inches = fig.dpi_scale_trans.inverted()
    saved = fig.get_tightbbox(renderer).padded(figures.SAVE_PAD_INCHES)
    box = title.get_window_extent(renderer).transformed(inches)
    assert saved.x0 <= box.x0 and box.x1 <= saved.x1 and saved.y0 <= box.y0 and box.y1 <= saved.y1
    img = mpimg.imread(path)
    assert img.shape[1] == pytest.approx(saved.width * 100, abs=2)
    assert img.shape[0] == pytest.approx(saved.height * 100, abs=2)
    border = np.concatenate([img[:2].reshape(-1, 4), img[-2:].reshape(-1, 4)])
    border = np.concatenate([border, img[:, :2].reshape(-1, 4), img[:, -2:].reshape(-1, 4)])
    assert (border[:, :3] > 0.99).all(), "something is cut at the edge of the saved figure"


def test_no_title_is_clipped(written, tmp_path):
    df, _, manifest = written
    final = final_performance(df, 5)
    for spec in manifest["figures"]:
        spec = {k: v for k, v in spec.items() if k not in ("files", "metric", "caption")}
        fig, _ = figures.make_figure(spec, df, final, n_boot=50, last_k=5)
        _assert_title_inside_saved_figure(fig, tmp_path / f"{spec['name']}.png")
        plt.close(fig)


def test_a_title_wider_than_the_figure_is_not_clipped(tmp_path):
    data = pd.DataFrame(
        {"method": "NPS+IQL", "hidden": 64, "eval_step": [0, 10_000], "iqm": [-30.0, -4.0]}
    ).assign(ci_low=np.nan, ci_high=np.nan, n_seeds=1, seed0=[-30.0, -4.0])
    title = "a title far wider than the figure it names, " * 4
    fig = figures.plot_curves(data, by="method", title=title, ylabel="y", legend_title="method")
    _assert_title_inside_saved_figure(fig, tmp_path / "wide.png")
    plt.close(fig)


def test_captions_come_from_the_specs(written):
    _, out, manifest = written
    by_name = {f["name"]: f for f in manifest["figures"]}
    for name, spec in by_name.items():
        caption = (out / f"{name}.rst").read_text().strip()
        assert caption == spec["caption"]
    curves = by_name["curves_predator_prey_h64_native"]["caption"]
    assert "IQM" in curves and "avoid level (-4" in curves and "threshold (> -3)" in curves
    assert "Figure 5(a)" in by_name["fig5a_3s_vs_5z_ps_iql_hidden_smax"]["caption"]
    assert "Claim 5" in by_name["comm_gain_hidden_predator_prey_native"]["caption"]


def test_method_colours_are_okabe_ito_and_fixed_across_figures(written):
    df, _, _ = written
    final = final_performance(df, 5)
    palette = set(figures.OKABE_ITO.values())
    assert set(figures.METHOD_COLORS.values()) <= palette
    assert len(set(figures.METHOD_COLORS.values())) == len(figures.METHOD_COLORS)
    assert len(set(figures.HIDDEN_COLORS.values())) == 3
    seen = {}
    for env, backend in (("predator_prey", "native"), ("3s_vs_5z", "smax")):
        spec = dict(name="curves", kind="methods", env=env, backend=backend)
        fig, _ = figures.make_figure(spec, df, final, n_boot=50, last_k=5)
        for line in fig.axes[0].get_lines():
            if line.get_gid() == "iqm":
                method = line.get_label().split(" (")[0]
                assert seen.setdefault(method, line.get_color()) == line.get_color()
        plt.close(fig)
    assert seen == {m: figures.METHOD_COLORS[m] for m in seen} and len(seen) == 4
    assert seen["NPS+IQL"] != seen["NPS+IQL+COMM"]


def test_curve_figures_of_one_env_share_their_y_limits(written):
    df, _, manifest = written
    final = final_performance(df, 5)
    limits = set()
    for spec in manifest["figures"]:
        if spec["env"] == "predator_prey" and spec["kind"] in ("methods", "hidden"):
            spec = {k: v for k, v in spec.items() if k not in ("files", "metric", "caption")}
            fig, _ = figures.make_figure(spec, df, final, n_boot=50, last_k=5)
            limits.add(tuple(round(v, 9) for v in fig.axes[0].get_ylim()))
            plt.close(fig)
    assert len(limits) == 1
    (low, high), runs = limits.pop(), df[df["env"] == "predator_prey"]["eval_return_mean"]
    assert low < runs.min() and runs.max() < high  # every seed's curve fits


def test_comm_gain_figure_plots_the_iqm_difference_with_the_reports_ci(written):
    df, out, manifest = written
    from ficomm.analysis.claims import run_statistics

    (spec,) = [
        f for f in manifest["figures"] if f["name"] == "comm_gain_hidden_predator_prey_native"
    ]
    assert spec["shares"] == ["PS", "NPS"]
    side = pd.read_csv(out / f"{spec['name']}.csv")
    assert set(side["statistic"]) == {"auc", "final"} and set(side["hidden"]) == {32, 64, 128}
    per_run = run_statistics(df[df["env"] == "predator_prey"], 5)
    per_run = per_run[per_run["metric"] == "eval_return_mean"]
    for _, row in side.iterrows():
        at = per_run[per_run["hidden"] == row["hidden"]]
        arms = {
            m: at.loc[at["method"] == m, row["statistic"]].to_numpy()
            for m in (row["comm_method"], row["plain_method"])
        }
        res = stats.bootstrap_contrast(
            arms,
            {row["comm_method"]: 1.0, row["plain_method"]: -1.0},
            estimator="iqm",
            n_boot=N_BOOT,
            seed=0,
        )
        assert row["gain"] == pytest.approx(
            stats.iqm(arms[row["comm_method"]]) - stats.iqm(arms[row["plain_method"]])
        )
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((res["ci_low"], res["ci_high"]))
    fig, data = figures.make_figure(
        {k: v for k, v in spec.items() if k not in ("files", "metric", "caption")},
        df,
        final_performance(df, 5),
        n_boot=N_BOOT,
        last_k=5,
    )
    assert [ax.get_xlabel() for ax in fig.axes] == ["GRU hidden size H"] * 2
    gains = [line for line in fig.axes[1].get_lines() if line.get_gid() == "gain"]
    assert [line.get_color() for line in gains] == [
        figures.METHOD_COLORS["PS+IQL+COMM"],
        figures.METHOD_COLORS["NPS+IQL+COMM"],
    ]
    final_ps = data[(data["statistic"] == "final") & (data["share"] == "PS")]
    assert gains[0].get_ydata() == pytest.approx(final_ps["gain"].to_numpy())
    plt.close(fig)


def test_single_level_sweeps_are_skipped_and_two_seeds_get_no_band(tmp_path):
    make_runs(tmp_path / "runs", envs=("predator_prey",), hiddens=(64,), seeds=(0, 1))
    df = aggregate_runs([tmp_path / "runs"])
    kinds = {s["kind"] for s in figures.figure_specs(df)}
    assert kinds == {"methods", "seeds", "listening"}  # no sweep of one H, no claim-5 figure
    spec = dict(name="curves", kind="methods", env="predator_prey", backend="native")
    fig, data = figures.make_figure(spec, df, final_performance(df, 5), n_boot=50, last_k=5)
    assert data["ci_low"].isna().all() and data["ci_high"].isna().all()
    ax = fig.axes[0]
    assert not [c for c in ax.collections if c.get_gid() == "band"]
    assert len([line for line in ax.get_lines() if line.get_gid() == "seed"]) == 8
    assert all(
        "too few for a band" in line.get_label()
        for line in ax.get_lines()
        if line.get_gid() == "iqm"
    )
    plt.close(fig)


def test_long_runs_get_a_panel_zoomed_on_the_first_200k_steps(tmp_path):
    make_runs(
        tmp_path / "runs",
        envs=("predator_prey",),
        hiddens=(64,),
        seeds=(0, 1, 2),
        budget=1_000_000,
        eval_interval=20_000,
    )
    df = aggregate_runs([tmp_path / "runs"])
    spec = dict(name="curves", kind="methods", env="predator_prey", backend="native")
    fig, data = figures.make_figure(spec, df, final_performance(df, 5), n_boot=50, last_k=5)
    whole, zoom = fig.axes
    assert zoom.get_xlim() == (0, figures.ZOOM_STEPS)
    for line in zoom.get_lines():
        if line.get_gid() in ("iqm", "seed"):
            assert max(line.get_xdata()) <= figures.ZOOM_STEPS
    assert (
        max(line.get_xdata().max() for line in whole.get_lines() if line.get_gid() == "iqm")
        > 900_000
    )
    assert zoom.get_ylim() == pytest.approx(
        figures.curve_limits(df, "predator_prey", "native", max_step=figures.ZOOM_STEPS)
    )
    plt.close(fig)
