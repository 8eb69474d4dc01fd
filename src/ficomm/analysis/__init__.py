"""Analysis of finished runs: pure functions of DataFrames built from run directories
(config.yaml, run_info.json, metrics.csv). Never imports the learner (torch).

aggregate: run directories -> tidy table; final performance per run.
stats: bootstrap CIs, IQM, seeds-to-decide, PredatorPrey basins.
figures, tables: the paper's figures and tables from the tidy table.
claims: the replication report (the paper's five claims tested).
publish: W&B logging of all of it (offline W&B run files are read back by ficomm.wandb_files).
cli: `ficomm analysis <subcommand>`.
"""
