# Training rules run one process per GPU of the job (workflow.processes) and declare those GPUs.


rule image_vae:
    """Pretrain the small image VAE that stands in for the SD2.1 VAE at small scale."""
    input:
        DATA_INPUT,
    output:
        run_done("image_vae"),
    log:
        f"{LOGS}/image_vae.log",
    benchmark:
        f"{BENCHMARKS}/image_vae.tsv"
    threads: THREADS
    resources:
        gpu=TRAIN_GPUS,
    params:
        run_config=lambda wc: run_config_param("image_vae"),
    shell:
        f"{JOB_ENV} {TIMEOUT}{TRAIN_CLI} train-image-vae --config {PROFILE_FILE} --out {RUNS}/image_vae "
        f"--if-changed restart > {{log}} 2>&1"


rule inflate:
    """The inflated, untrained CV-VAE: reconstructs images exactly, videos not yet."""
    input:
        IMAGE_VAE_INPUT,
    output:
        run_done("inflated"),
    log:
        f"{LOGS}/inflate.log",
    benchmark:
        f"{BENCHMARKS}/inflate.tsv"
    threads: 1
    params:
        image_vae=IMAGE_VAE.path,
        subfolder=f"--subfolder {IMAGE_VAE.subfolder}" if IMAGE_VAE.subfolder else "",
        overrides=inflate_overrides(),
    shell:
        f"{JOB_ENV} {TIMEOUT}{CVVAE_CLI} inflate --image-vae {{params.image_vae}} {{params.subfolder}} "
        f"--out {RUNS}/inflated/final {{params.overrides}} > {{log}} 2>&1"


rule train:
    """One CV-VAE variant (regularisation, mapping) or the SVD-style VAE, all with the same budget and seed."""
    input:
        DATA_INPUT,
        IMAGE_VAE_INPUT,
    output:
        run_done("{run}"),
    log:
        f"{LOGS}/train_{{run}}.log",
    benchmark:
        f"{BENCHMARKS}/train_{{run}}.tsv"
    # Training first: evaluation jobs fill the GPU slots that training leaves free.
    priority: 1
    threads: THREADS
    resources:
        gpu=TRAIN_GPUS,
    params:
        run_config=lambda wc: run_config_param(wc.run),
    shell:
        f"{JOB_ENV} {TIMEOUT}{TRAIN_CLI} train --config {PROFILE_FILE} --variant {{wildcards.run}} {SET_IMAGE_VAE} "
        f"--out {RUNS}/{{wildcards.run}} --if-changed restart > {{log}} 2>&1"
