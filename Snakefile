"""The CV-VAE reproduction study as a Snakemake workflow.

    snakemake --cores all                              # the `default` profile, offline, on a fresh clone
    snakemake --cores all --config profile=ci          # tiny, minutes on a CPU
    snakemake --workflow-profile profiles/gpu --config profile=gpu
    snakemake --workflow-profile profiles/slurm --config profile=paper

embedded data -> image VAE -> inflated CV-VAE and trained variants (and the SVD-style VAE) -> `cvvae evaluate`
-> notebooks (papermill) -> results/<profile>/README.md. Everything a rule needs comes from config/<profile>.yaml.

Reruns are safe: a training or evaluation job whose resolved config changed starts afresh (`--if-changed
restart`; the run folders record what they were computed from), and notebooks and the report publish their
outputs only when they succeed (earlier results stay as they were otherwise).
"""

from snakemake.utils import min_version

min_version("8.20")

# The profile (config/<profile>.yaml) and the helpers every stage uses; then one file per stage.
include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/notebooks.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/README.md",
