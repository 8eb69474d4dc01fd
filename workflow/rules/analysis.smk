"""From run directories to the paper's figures, tables, replication report and W&B.

All of it is `ficomm analysis` (src/ficomm/analysis); these rules only wire files together.
They are cheap and may need network (W&B), so they run where Snakemake runs, never as jobs.

Figures, tables and the replication report are marked for `snakemake --report report.html`:
each figure's caption is the .rst that `ficomm analysis figures` writes beside it from its spec
(`figures.figure_caption`), the tables' and the report's are in workflow/report/.
"""


report: "../report/workflow.rst"


localrules:
    aggregate,
    report,
    paper_figures,
    publish_wandb,


rule aggregate:
    input:
        metrics=run_files("metrics.csv"),
        run_info=run_files("run_info.json"),
    output:
        f"{RESULTS}/all_runs.csv",
    log:
        f"{LOG_DIR}/aggregate.log",
    conda:
        "../envs/ficomm.yaml"
    params:
        run_dirs=lambda wildcards, input: [os.path.dirname(path) for path in input.metrics],
    shell:
        "ficomm analysis aggregate {params.run_dirs:q} --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        table=f"{RESULTS}/all_runs.csv",
        reference=REFERENCE,
    output:
        md=report(
            f"{FIGURES}/replication.md",
            caption="../report/replication.rst",
            category="Verdicts",
            labels={"file": "replication report"},
        ),
        json=f"{FIGURES}/replication.json",
    log:
        f"{LOG_DIR}/report.log",
    conda:
        "../envs/ficomm.yaml"
    params:
        out=lambda wildcards, output: os.path.dirname(output.md),
    shell:
        "ficomm analysis claims --runs {input.table:q} --reference {input.reference:q}"
        " --out-dir {params.out:q} > {log:q} 2>&1"


# The named target: `snakemake paper_figures` writes every figure and table, and the report.
rule paper_figures:
    input:
        table=f"{RESULTS}/all_runs.csv",
        report=rules.report.output,
    output:
        figure_files(),
        **table_files("final_performance"),
        **table_files("param_counts"),
    log:
        f"{LOG_DIR}/paper_figures.log",
    conda:
        "../envs/ficomm.yaml"
    params:
        out=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "(ficomm analysis figures --runs {input.table:q} --out-dir {params.out:q}"
        " && ficomm analysis tables --runs {input.table:q} --out-dir {params.out:q}) > {log:q} 2>&1"


rule publish_wandb:
    input:
        table=f"{RESULTS}/all_runs.csv",
        figures=rules.paper_figures.output,
        report=rules.report.output.json,
    output:
        f"{RESULTS}/wandb_publish.json",
    log:
        f"{LOG_DIR}/publish_wandb.log",
    conda:
        "../envs/ficomm.yaml"
    params:
        figures=lambda wildcards, input: os.path.dirname(input.figures[0]),
        wandb_dir=lambda wildcards, output: os.path.dirname(output[0]),
        args=publish_args,
    shell:
        "ficomm analysis publish --runs {input.table:q} --figures-dir {params.figures:q}"
        " --report {input.report:q}"
        " --wandb-dir {params.wandb_dir:q} {params.args} --out {output:q} > {log:q} 2>&1"
