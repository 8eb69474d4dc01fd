"""`ficomm analysis <subcommand>` (also `python -m ficomm.analysis.cli`): the steps the
Snakemake rules call. Every step after `aggregate` reads only the aggregated CSV."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ficomm.analysis.aggregate import DEFAULT_LAST_K, AnalysisInputError
from ficomm.analysis.claims import DEFAULT_MIN_SEEDS
from ficomm.analysis.stats import N_BOOT


def _common(p: argparse.ArgumentParser, *, out_dir: bool = True) -> None:
    p.add_argument("--runs", required=True, help="aggregated CSV written by `aggregate`")
    if out_dir:
        p.add_argument(
            "--out-dir", default="paper_figures", help="where to write (default: %(default)s)"
        )
    p.add_argument(
        "--last-k",
        type=int,
        default=DEFAULT_LAST_K,
        help="final performance = mean of each run's last K evaluations (default: %(default)s)",
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=N_BOOT,
        help="Monte-Carlo bootstrap resamples, used only where the exact bootstrap has too many "
        "combinations to enumerate (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of that Monte-Carlo bootstrap (default: 0)"
    )


def _claims_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", default=None, help="config/reference.yaml (the paper's values)")
    p.add_argument(
        "--min-seeds",
        type=int,
        default=DEFAULT_MIN_SEEDS,
        help="fewer seeds per arm -> the claim contrast is inconclusive (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ficomm analysis",
        description="Aggregate runs, draw the paper's figures and tables, test its claims, publish to W&B.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("aggregate", help="run directories -> one tidy CSV")
    p.add_argument("paths", nargs="+", help="run directories, or roots searched for them")
    p.add_argument("--out", required=True, help="CSV to write, e.g. results/<preset>/all_runs.csv")

    p = sub.add_parser("figures", help="learning curves, hidden sweeps, per-seed strips")
    _common(p)
    p = sub.add_parser("tables", help="final-performance and parameter-count tables")
    _common(p)
    p = sub.add_parser("claims", help="replication report (replication.md/.json)")
    _common(p)
    _claims_opts(p)
    p = sub.add_parser("paper", help="figures + tables + claims in one go")
    _common(p)
    _claims_opts(p)

    p = sub.add_parser("publish", help="log table, figures and verdicts to W&B")
    _common(p, out_dir=False)
    p.add_argument("--figures-dir", default="paper_figures", help="PNG figures to log")
    p.add_argument("--report", required=True, help="replication.json written by `claims`")
    p.add_argument("--out", required=True, help="JSON record of what was logged and where")
    p.add_argument(
        "--wandb-dir", default=None, help="W&B files go under DIR/wandb (default: --out's folder)"
    )
    p.add_argument(
        "--wandb-mode",
        default=None,
        choices=("offline", "online", "disabled"),
        help="WANDB_MODE wins if set; default offline",
    )
    p.add_argument("--wandb-project", default="ficomm")
    p.add_argument("--wandb-entity", default=None)
    p.add_argument("--name", default=None, help="W&B run name")
    p.add_argument(
        "--wandb-reference-project", default=None, help="'entity/project' pulled when online"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ficomm.analysis.publish import PublishError

    try:
        _run(args)
    except (AnalysisInputError, FileNotFoundError, PublishError) as e:
        print(f"ficomm analysis {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


def _run(args: argparse.Namespace) -> None:
    if args.command == "aggregate":
        from ficomm.analysis.aggregate import aggregate_runs

        df = aggregate_runs(args.paths)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(out)
        print(f"aggregated {df['run_dir'].nunique()} runs ({len(df)} evaluations) -> {out}")
        return

    from ficomm.analysis.aggregate import load_runs

    df = load_runs(args.runs)
    stat = dict(last_k=args.last_k, n_boot=args.n_boot, seed=args.seed)
    if args.command in ("figures", "paper"):
        from ficomm.analysis.figures import write_figures

        manifest = write_figures(df, args.out_dir, **stat)
        print(f"{len(manifest['figures'])} figures -> {args.out_dir}")
    if args.command in ("tables", "paper"):
        from ficomm.analysis.tables import write_tables

        write_tables(df, args.out_dir, **stat)
        print(f"tables -> {args.out_dir}")
    if args.command in ("claims", "paper"):
        from ficomm.analysis.claims import load_reference, replication_report, write_report

        report = replication_report(
            df, load_reference(args.reference), min_seeds=args.min_seeds, **stat
        )
        write_report(report, args.out_dir)
        verdicts = ", ".join(f"{c['id']}: {c['verdict']}" for c in report["claims"])
        print(f"replication report -> {args.out_dir} ({verdicts})")
    if args.command == "publish":
        from ficomm.analysis.publish import publish, write_publish_record

        report_path = Path(args.report)
        if not report_path.is_file():
            raise AnalysisInputError(
                f"{report_path}: replication report not found (run `claims` first)"
            )
        report = json.loads(report_path.read_text())
        record = publish(
            df,
            args.figures_dir,
            report,
            wandb_dir=args.wandb_dir or Path(args.out).parent,
            mode=args.wandb_mode,
            project=args.wandb_project,
            entity=args.wandb_entity,
            name=args.name,
            reference_project=args.wandb_reference_project,
            **stat,
        )
        write_publish_record(record, args.out)
        print(f"published ({record['mode']}) run {record['run_id']} -> {args.out}")


if __name__ == "__main__":
    sys.exit(main())
