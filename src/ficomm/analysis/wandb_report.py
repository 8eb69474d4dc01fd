"""The replication on W&B: the configuration groups of the training runs, and a W&B Report
(wandb-workspaces) with the learning curves grouped by method and the verdict table.

The Report is a definition (a `wandb_workspaces.reports.v2.Report` object) built offline from
the aggregated runs and the replication report; only `save_report` needs network and a key.
Its run sets select the training runs by the config keys every run logs (preset, env,
hidden), so the Report shows the runs of this preset wherever they were synced from.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import yaml

from ficomm.analysis.aggregate import AnalysisInputError
from ficomm.analysis.claims import configuration_table, verdict_table
from ficomm.config import make_config
from ficomm.envs import env_spec
from ficomm.envs.base import ConfigError

GROUP_COLUMNS = (
    "group",
    "preset",
    "env",
    "backend",
    "method",
    "hidden",
    "seeds",
    "run_names",
    "run_ids",
)


def configuration_groups(runs: pd.DataFrame, project_url: str | None = None) -> pd.DataFrame:
    """One row per W&B group (a configuration) of ficomm's runs: its seeds, run names and ids,
    read from each run directory's config.yaml and run_info.json exactly as training named
    them. With `project_url` (online), a `url` column points to each group's page."""
    if "source" in runs:
        runs = runs[runs["source"] == "ficomm"]
    rows = []
    for run_dir in sorted(set(runs["run_dir"])):
        d = Path(run_dir)
        try:
            cfg = make_config(yaml.safe_load((d / "config.yaml").read_text()))
            run_id = json.loads((d / "run_info.json").read_text()).get("wandb_run_id") or ""
        except (OSError, yaml.YAMLError, ValueError, KeyError, ConfigError) as e:
            raise AnalysisInputError(f"{d}: cannot name its W&B run ({e})") from e
        rows.append(
            {
                "group": cfg.group_name(),
                "preset": cfg.preset or "",
                "env": cfg.env,
                "backend": cfg.backend,
                "method": cfg.method,
                "hidden": cfg.hidden,
                "seed": cfg.seed,
                "run_name": cfg.run_name(),
                "run_id": run_id,
            }
        )
    if not rows:
        return pd.DataFrame(columns=list(GROUP_COLUMNS))
    df = pd.DataFrame(rows).sort_values(["env", "backend", "hidden", "method", "seed"])
    out = (
        df.groupby("group", sort=False)
        .agg(
            preset=("preset", "first"),
            env=("env", "first"),
            backend=("backend", "first"),
            method=("method", "first"),
            hidden=("hidden", "first"),
            seeds=("seed", lambda s: " ".join(map(str, s))),
            run_names=("run_name", " ".join),
            run_ids=("run_id", lambda s: " ".join(i for i in s if i)),
        )
        .reset_index()
    )
    out = out[list(GROUP_COLUMNS)]
    if project_url:  # online: where each group is on W&B
        out["url"] = [f"{project_url}/groups/{quote(g, safe='')}" for g in out["group"]]
    return out


def _runset_filter(presets: list[str], env: str, hidden: int) -> str:
    """Training runs of these presets (none: any), env and hidden size; the analysis run has
    no env key and so never matches."""
    parts = [f"Config('env') = '{env}'", f"Config('hidden') = {hidden}"]
    if [p for p in presets if p]:
        parts.insert(0, "Config('preset') in [" + ", ".join(f"'{p}'" for p in presets) + "]")
    return " and ".join(parts)


def build_report(
    report: dict,
    groups: pd.DataFrame,
    *,
    project: str,
    entity: str | None,
    publish_run: str | None = None,
):
    """The W&B Report of the replication (not saved): the verdicts, then per env and hidden
    size one panel of learning curves (mean and standard error over seeds, one line per
    method), then the configuration tables."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as e:
        raise AnalysisInputError(
            f"W&B report: wandb-workspaces is not installed ({e}); pip install 'ficomm[pipeline]'"
        ) from e
    if not len(groups):
        raise AnalysisInputError("W&B report: no ficomm runs to show")
    presets = sorted(set(groups["preset"]))
    preset = ", ".join(p or "(none)" for p in presets)
    regenerate = (
        f" Regenerate with `snakemake paper_figures --config preset={presets[0]}`."
        if len(presets) == 1 and presets[0]
        else ""
    )
    blocks = [
        wr.P(
            f"Pina et al. (2024), Fully Independent Communication in MARL, replicated by ficomm "
            f"(preset {preset})."
            + regenerate
            + (f" The analysis run: {publish_run}." if publish_run else "")
        ),
        wr.H1("Verdicts"),
        wr.MarkdownBlock("\n".join(verdict_table(report))),
    ]
    if report.get("beyond_paper"):
        blocks += [
            wr.H2("Beyond the paper (not claims of the paper)"),
            wr.MarkdownBlock("\n".join(verdict_table({"claims": report["beyond_paper"]}))),
        ]
    for (env, hidden), part in groups.groupby(["env", "hidden"], sort=True):
        spec = env_spec(env)
        methods = ", ".join(sorted(set(part["method"])))
        blocks += [
            wr.H2(f"{spec.title}, H {hidden}: learning curves by method"),
            wr.PanelGrid(
                runsets=[
                    wr.Runset(
                        entity=entity or "",
                        project=project,
                        name=f"{env} H{hidden} ({methods})",
                        filters=_runset_filter(presets, env, int(hidden)),
                        groupby=["config.method"],
                    )
                ],
                panels=[
                    wr.LinePlot(
                        title=f"{spec.metric_label} (mean and standard error over seeds)",
                        x="env_steps",
                        y=[spec.metric],
                        title_x="env steps",
                        title_y=spec.metric_label,
                        groupby_aggfunc="mean",
                        groupby_rangefunc="stderr",
                    )
                ],
            ),
        ]
    if report.get("configurations"):
        blocks += [
            wr.H1("Configurations (IQM over seeds)"),
            wr.MarkdownBlock("\n".join(configuration_table(report))),
        ]
    blocks += [wr.H1("W&B groups"), wr.MarkdownBlock(_groups_markdown(groups))]
    return wr.Report(
        project=project,
        entity=entity or "",
        title=f"ficomm replication: {preset}"[:128],
        description="Learning curves grouped by method and the claim verdicts.",
        blocks=blocks,
    )


def _groups_markdown(groups: pd.DataFrame) -> str:
    lines = ["| group | method | H | seeds |", "|---|---|---|---|"]
    lines += [f"| `{g.group}` | {g.method} | {g.hidden} | {g.seeds} |" for g in groups.itertuples()]
    return "\n".join(lines)


def report_definition(report_obj) -> dict:
    """The Report as plain JSON data, each block and panel with its wandb-workspaces type
    (what a test checks and the publish step writes)."""
    from pydantic import TypeAdapter

    def dump(obj) -> dict:
        return {"type": type(obj).__name__, **TypeAdapter(type(obj)).dump_python(obj, mode="json")}

    out = dump(report_obj)
    out["blocks"] = []
    for block in report_obj.blocks:
        b = dump(block)
        if "panels" in b:
            b["panels"] = [dump(p) for p in block.panels]
        out["blocks"].append(b)
    return out


def save_report(report_obj) -> str:
    """Save the Report to W&B (online: network and an API key); returns its URL."""
    try:
        report_obj.save()
    except Exception as e:  # the W&B API raises its own error types, and plain Exception
        raise AnalysisInputError(
            f"W&B report: could not save ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "check WANDB_API_KEY (or `wandb login`) and the entity/project"
        ) from e
    return report_obj.url
