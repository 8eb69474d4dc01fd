"""`snakemake --report report.html`: one self-contained HTML page with every figure and table of
a preset, each figure with the caption written from its spec, and the verdict table.

Built offline in a scratch copy of the workflow from a synthetic run set: the aggregated table
is written directly and `ficomm analysis` (the commands the paper_figures and report rules run)
writes the figures, tables and report; the report needs no training run on disk.
"""

from __future__ import annotations

import base64
import html
import json
import sys

import pytest
from workflow_utils import REPO, copy_workflow, snakemake

from ficomm.analysis.aggregate import aggregate_runs
from ficomm.analysis.cli import main as analysis_main

sys.path.insert(0, str(REPO / "tests" / "analysis"))  # the synthetic run sets of the analysis tests
from synthetic_runs import make_runs  # noqa: E402

OVERLAY = {
    "presets": {
        "smoke": {
            "grid": {
                "env": ["predator_prey"],
                "share": ["ps", "nps"],
                "comm": [False, True],
                "hidden": [32, 64],
                "seeds": [0, 1, 2],
            },
            "budget": {"predator_prey": 200_000},
            "eval_interval": 10_000,
        }
    }
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("report"), OVERLAY)
    make_runs(workdir / "synthetic", envs=("predator_prey",), hiddens=(32, 64), seeds=(0, 1, 2))
    table = workdir / "results/smoke/all_runs.csv"
    table.parent.mkdir(parents=True)
    aggregate_runs([workdir / "synthetic"]).to_csv(table, index=False)
    figures = workdir / "paper_figures/smoke"
    for step in ("figures", "tables", "claims"):
        args = ["--runs", str(table), "--out-dir", str(figures), "--n-boot", "200"]
        assert analysis_main([step, *args]) == 0
    res = snakemake(
        workdir, "--report", "report.html", "paper_figures", "--configfile", "overlay.yaml"
    )
    assert res.returncode == 0, res.stdout[-4000:]
    return figures, (workdir / "report.html").read_text()


def test_every_figure_is_embedded_with_its_caption(report):
    figures, page = report
    manifest = json.loads((figures / "figures.json").read_text())
    kinds = {f["kind"] for f in manifest["figures"]}
    assert kinds == {"methods", "hidden", "comm_gain", "seeds", "listening"}
    for fig in manifest["figures"]:
        png = (figures / f"{fig['name']}.png").read_bytes()
        assert base64.b64encode(png).decode()[:2000] in page, fig["name"]  # embedded, not linked
        caption = (figures / f"{fig['name']}.rst").read_text().strip()
        assert caption == fig["caption"]
        assert html.escape(caption.split(". ")[0], quote=False) in page, fig["name"]
    assert "Figures: PredatorPrey 7x7 (native backend)" in page
    assert "claim 5: COMM's gain against hidden size" in page


def test_tables_and_the_verdict_table_are_in_the_report(report):
    figures, page = report
    for table in ("final_performance", "param_counts"):
        assert f'"name": "{table}.csv"' in page
        first_row = (figures / f"{table}.md").read_text().split("\n\n", 1)[-1].splitlines()[2]
        assert html.escape(first_row, quote=False).replace('"', '\\"') in page
    verdicts = json.loads((figures / "replication.json").read_text())["claims"]
    assert "| claim | verdict" in page
    for claim in verdicts:
        assert f"| {claim['id']} | **{claim['verdict']}** |" in page


def test_the_report_is_self_contained(report):
    _, page = report
    assert "<script src=" not in page and "<link " not in page
