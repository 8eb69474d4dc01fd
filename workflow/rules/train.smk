"""One `ficomm train` job per grid point.

The run directory also holds `checkpoint/`, which is deliberately not an output: Snakemake
deletes the outputs of a failed job, and the checkpoint is what a killed, timed-out or preempted
job resumes from when it is retried (`ficomm train` rewrites metrics.csv from it).

What reruns a finished run: `params.args` holds only the keys that change learning, so a change
there reruns the job (and common.smk refuses it first where a run is already on disk); the keys
that say how a run executes or is logged (device, kernel, W&B) come from a function of the
job's resources, which Snakemake leaves out of its params rerun trigger, and threads from
`threads`, so changing them reruns nothing.
"""


rule train:
    output:
        metrics=f"{RUN_DIR}/metrics.csv",
        run_info=f"{RUN_DIR}/run_info.json",
    log:
        f"{LOG_DIR}/train/{{env}}/{{backend}}/{{share}}_{{comm}}/h{{hidden}}/seed{{seed}}.log",
    conda:
        "../envs/ficomm.yaml"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=job_gpus(),
    params:
        out=lambda wildcards, output: os.path.dirname(output.metrics),
        args=train_args,
        execution=train_execution_args,
    shell:
        "ficomm train out={params.out:q} {params.args} {params.execution}"
        " threads={threads} > {log:q} 2>&1"


# Packs: where a preset's `pack` (or the environment's default for the device) is above one,
# one job trains that many seeds of one configuration in one `ficomm train` process. Each
# pack is its own rule, with the pack's run files as outputs; rules without wildcards take
# precedence over `train`, so each run file has one producer. Outputs, logs of the runs and
# resume are as for `train`: a retried pack resumes each of its runs from its checkpoint.
for _pack in PACKS:

    rule:
        name:
            pack_name(_pack)
        output:
            metrics=[f"{d}/metrics.csv" for d in pack_dirs(_pack)],
            run_info=[f"{d}/run_info.json" for d in pack_dirs(_pack)],
        log:
            f"{LOG_DIR}/train/{pack_name(_pack)}.log",
        conda:
            "../envs/ficomm.yaml"
        threads: 1
        resources:
            **pack_resources(_pack),
        params:
            # functions, so that the template's {seed} is not read as a wildcard
            out=lambda wildcards, o=pack_out(_pack): o,
            args=lambda wildcards, a=pack_args(_pack): a,
            execution=pack_execution_args(_pack),
        shell:
            "ficomm train out={params.out:q} {params.args} {params.execution}"
            " threads={threads} > {log:q} 2>&1"
