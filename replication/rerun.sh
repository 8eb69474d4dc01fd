#!/usr/bin/env bash
# How the replication's runs were brought up to date, through the pipeline unchanged: every
# comm run from before message interventions and final policies (no policy.pt) is rerun, one
# at a time (H 64, then H 32, then H 128; NPS+IQL+COMM first), then the grid's missing runs (seeds 3-4 at H 32 and
# H 128) are trained. Interrupted at any point, rerunning it resumes: a run with a checkpoint
# continues from it. One CPU core: `nohup nice bash replication/rerun.sh > rerun.log 2>&1 &`.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE=(.venv/bin/snakemake --cores 1 --config preset=replication)
for h in 64 32 128; do
  for run in replication/runs/predator_prey/native/{nps,ps}_comm/h$h/seed*; do  # claim 1 first
    [ -e "$run/policy.pt" ] && continue
    if [ -d "$run/checkpoint" ]; then
      rm -f "$run/metrics.csv" "$run/run_info.json"  # the job runs again and resumes
    else
      rm -rf "$run"  # the old run (kept in git history); trained again from the start
    fi
    "${SNAKEMAKE[@]}" -- "$run/metrics.csv"
  done
done
"${SNAKEMAKE[@]}" --configfile replication/complete.yaml --until train
