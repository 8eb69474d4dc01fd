"""ficomm: the experiment grid of Pina et al. (2024) from training runs to paper figures.

    snakemake --cores 2 paper_figures                        # the embedded smoke grid
    snakemake --profile workflow/profiles/slurm --config preset=paper
    snakemake --cores 2 -n                                   # show what would run

config/config.yaml holds the grid, budgets and evaluation settings as presets; rules live in
workflow/rules/ (common.smk: config checks and helpers; train.smk: one job per grid point;
analysis.smk: aggregate, figures, tables, report, W&B publish).
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        rules.paper_figures.output,
        rules.publish_wandb.output,
