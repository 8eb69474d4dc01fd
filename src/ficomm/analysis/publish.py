"""Publish the replication to Weights & Biases: the aggregated table, the figures and the
claim verdicts as one run (job_type "replication"), offline unless configured otherwise.

When online with a reference project configured, that project's runs are pulled through the
public API and converted (`api_runs_to_frame`, a pure function of objects shaped like
`wandb.apis.public.Run`) into the same tidy format with source = "reference", and their final
performance is compared with ficomm's in one table.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ficomm.analysis import stats
from ficomm.analysis.aggregate import (
    DEFAULT_LAST_K,
    REQUIRED_CONFIG,
    AnalysisInputError,
    final_performance,
    method_label,
)
from ficomm.analysis.tables import final_performance_table
from ficomm.analysis.wandb_report import (
    build_report,
    configuration_groups,
    report_definition,
    save_report,
)
from ficomm.tracking import wandb_start_failure
from ficomm.wandb_files import wait_until_complete

MODES = ("offline", "online", "disabled")
# Columns of the aggregated table logged as a wandb.Table: W&B types every cell in Python
# (about 10 us each), so the full 60-column table of a 24-configuration grid would take
# minutes; the complete CSV is saved with the run's files instead.
TABLE_COLUMNS = (
    "source", "env", "backend", "method", "share", "comm", "hidden", "seed", "variant",
    "n_params", "run_dir", "eval_step", "env_steps", "episodes", "grad_steps",
    "eval_return_mean", "eval_return_std", "eval_win_rate", "eval_captures_mean",
    "eval_length_mean", "train_loss", "epsilon", "wall_time", "env_steps_per_sec",
)  # fmt: skip
# Config keys of a reference run that become tidy columns (besides the grid axes).
_REFERENCE_CONFIG = ("budget", "eval_interval", "msg_hidden", "msg_dim", "own_message")


class PublishError(RuntimeError):
    """W&B could not start the publish run; the message says why and what to do."""


def resolve_mode(mode: str | None) -> str:
    """WANDB_MODE (environment) wins, then `mode`, then offline; as for training runs."""
    chosen = os.environ.get("WANDB_MODE") or mode or "offline"
    if chosen not in MODES:
        raise AnalysisInputError(
            f"mode: {chosen!r} is not one of {list(MODES)} (WANDB_MODE or --wandb-mode)"
        )
    return chosen


def api_runs_to_frame(
    runs: Iterable, *, column_map: dict[str, str] | None = None, source: str = "reference"
) -> pd.DataFrame:
    """W&B API runs -> tidy rows like `aggregate_runs` (one per logged evaluation).

    Each run needs `.config` (a dict holding env, backend, share, comm, hidden, seed),
    `.scan_history()` (an iterable of dicts with env_steps and eval_* keys), `.id` and `.path`.
    `column_map` renames history keys (e.g. {"test_return_mean": "eval_return_mean"}).
    History rows without an evaluation (no eval_return_mean) are skipped.
    """
    column_map = column_map or {}
    frames = []
    for run in runs:
        where = "/".join(map(str, getattr(run, "path", [getattr(run, "id", "?")])))
        config = {k: _unwrap(v) for k, v in dict(run.config).items()}
        missing = [k for k in REQUIRED_CONFIG if k not in config]
        if missing:
            raise AnalysisInputError(f"wandb:{where}: config keys missing: {missing}")
        rows = []
        for row in run.scan_history():
            row = {column_map.get(k, k): v for k, v in row.items()}
            if row.get("eval_return_mean") is None or row.get("env_steps") is None:
                continue
            rows.append({k: v for k, v in row.items() if not k.startswith("_")})
        if not rows:
            continue
        df = pd.DataFrame(rows).sort_values("env_steps").reset_index(drop=True)
        interval = int(config.get("eval_interval") or 0)
        df["eval_index"] = range(len(df))
        df["eval_step"] = (df["env_steps"] // interval) * interval if interval else df["env_steps"]
        for key in (*REQUIRED_CONFIG, *_REFERENCE_CONFIG):
            if key in config:
                df[key] = config[key]
        df["comm"] = bool(config["comm"])
        # runs logged before `channel` existed used the paper's concatenation
        df["channel"] = config.get("channel") or "concat"
        df["method"] = method_label(config["share"], config["comm"], df["channel"].iloc[0])
        df["n_params"] = config.get("n_params")
        df["run_dir"] = f"wandb:{where}"
        df["source"] = source
        df["variant"] = ""
        df["run_complete"] = True
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pull_reference(project: str, api=None, **kwargs) -> pd.DataFrame:
    """Every run of the W&B project 'entity/project' in tidy form (needs network and a key)."""
    if api is None:
        import wandb

        api = wandb.Api()
    return api_runs_to_frame(api.runs(project), **kwargs)


def publish(
    runs: pd.DataFrame,
    figures_dir: str | Path,
    report: dict,
    *,
    wandb_dir: str | Path,
    mode: str | None = None,
    project: str = "ficomm",
    entity: str | None = None,
    name: str | None = None,
    reference_project: str | None = None,
    api=None,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> dict:
    """Log table, figures, verdicts and the configuration groups as one W&B run, and build the
    W&B Report (saved when online; its definition is written to `wandb_dir`/wandb_report.json
    in every mode); returns what was logged and where.

    The reference project is pulled when the mode is online (or an `api` object is given)."""
    import wandb

    mode = resolve_mode(mode)
    figures_dir = Path(figures_dir)
    pngs = sorted(figures_dir.glob("*.png"))
    ours = runs[runs["source"] == "ficomm"] if "source" in runs else runs
    reference = pd.DataFrame()
    if reference_project and (mode == "online" or api is not None):
        reference = pull_reference(reference_project, api=api)
    combined = pd.concat([ours, reference], ignore_index=True) if len(reference) else ours
    comparison = pd.concat(
        [
            final_performance_table(
                final_performance(part, last_k), n_boot=n_boot, seed=seed
            ).assign(source=src)
            for src, part in combined[combined["variant"] == ""].groupby("source")
        ],
        ignore_index=True,
    )
    every_claim = [*report["claims"], *report.get("beyond_paper", [])]
    claims = pd.DataFrame(
        [
            {
                "claim": c["id"],
                "beyond_paper": bool(c.get("beyond_paper")),
                "text": c["text"],
                "operationalisation": c["operationalisation"],
                "verdict": c["verdict"],
                "seeds_to_decide": c["seeds_to_decide"],
            }
            for c in every_claim
        ]
    )
    # Absolute: an inherited WANDB_SERVICE means a wandb-core started elsewhere (another
    # working directory) writes the run, and it would resolve a relative dir against its own.
    wandb_dir = Path(wandb_dir).resolve()
    wandb_dir.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            project=project,
            entity=entity,
            name=name,
            job_type="replication",
            dir=str(wandb_dir),
            mode=mode,
            config={"definitions": report.get("definitions", {}), "data": report.get("data", {})},
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
    except Exception as exc:  # no API key, no network, bad entity: wandb's own types
        line = wandb_start_failure(exc, mode, "publish run", "publish with --wandb-mode {}")
        raise PublishError(f"{line}; nothing was published") from None
    report_url = None
    try:
        project_url = run.get_project_url() if mode == "online" else None
        groups = configuration_groups(ours, project_url)
        report_obj = build_report(
            report, groups, project=project, entity=entity, publish_run=name or run.id
        )
        definition_path = wandb_dir / "wandb_report.json"
        definition_path.write_text(json.dumps(report_definition(report_obj), indent=2) + "\n")
        if mode != "disabled":
            full = Path(run.dir) / "all_runs.csv"
            combined.to_csv(full, index=False)
            run.save(str(full), base_path=run.dir, policy="now")
        logged_cols = [c for c in TABLE_COLUMNS if c in combined.columns]
        with _table_rows(len(combined)):
            run.log(
                {
                    "all_runs": _table(combined[logged_cols]),
                    "final_performance": _table(comparison),
                    "claims": _table(claims),
                    "configuration_groups": _table(groups),
                    **{f"figures/{p.stem}": wandb.Image(str(p), caption=p.stem) for p in pngs},
                }
            )
        for c in every_claim:
            run.summary[f"claim_{c['id']}_verdict"] = c["verdict"]
            run.summary[f"claim_{c['id']}_seeds_to_decide"] = c["seeds_to_decide"]
        run.summary["configuration_groups"] = len(groups)
        if mode == "online":
            report_url = save_report(report_obj)
            run.summary["report_url"] = report_url
        run_dir = Path(run.dir).parent if mode != "disabled" else None
        run_id = run.id
    finally:
        run.finish()
    if mode == "offline":
        wandb_file = next(run_dir.glob("run-*.wandb"), None)
        if wandb_file is None or not wait_until_complete(wandb_file):
            raise RuntimeError(f"{run_dir}: W&B did not finish writing the offline run file")
    return {
        "mode": mode,
        "project": project,
        "run_id": run_id,
        "run_dir": str(run_dir) if run_dir else None,
        "logged": {
            "tables": {
                "all_runs": len(combined),
                "final_performance": len(comparison),
                "claims": len(claims),
                "configuration_groups": len(groups),
            },
            "images": [p.stem for p in pngs],
            "verdicts": {str(c["id"]): c["verdict"] for c in every_claim},
        },
        "reference_runs": int(reference["run_dir"].nunique()) if len(reference) else 0,
        "report": {"definition": str(definition_path), "url": report_url},
    }


@contextlib.contextmanager
def _table_rows(n: int):
    """Let one logged wandb.Table hold `n` rows (a run table is cut at Table.MAX_ROWS,
    10,000, by default; the full grid has about 24,000 evaluations)."""
    import wandb

    old = wandb.Table.MAX_ROWS
    wandb.Table.MAX_ROWS = max(old, n)
    try:
        yield
    finally:
        wandb.Table.MAX_ROWS = old


def _table(df: pd.DataFrame):
    """A wandb.Table of plain Python values (NA -> None; text columns as str)."""
    import wandb

    out = df.copy()
    for c in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[c]) or pd.api.types.is_bool_dtype(out[c])):
            out[c] = out[c].map(lambda v: None if _isna(v) else str(v))
    rows = out.astype(object).where(out.notna(), None).values.tolist()
    return wandb.Table(columns=list(out.columns), data=rows, allow_mixed_types=True)


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _unwrap(v):
    """The API's config values may come as {"value": x, "desc": ...}."""
    if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"}:
        return v["value"]
    return v


def write_publish_record(record: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
