rule image_vae:
    """Pretrain the small image VAE that stands in for the SD2.1 VAE at small scale."""
    input:
        DATA_INPUT,
    output:
        run_done("image_vae"),
    log:
        f"{LOGS}/image_vae.log",
    benchmark:
        f"{BENCH}/image_vae.tsv"
    threads: THREADS
    resources:
        gpu=TRAIN_GPUS,
    params:
        run_config=lambda wc: run_config_param("image_vae"),
    shell:
        f"{ENV} {TIMEOUT}{TRAIN_CVVAE} train-image-vae --config {CONFIG} --out {RUNS}/image_vae --if-changed restart "
        f"> {{log}} 2>&1"


rule inflate:
    """The inflated, untrained CV-VAE: reconstructs images exactly, videos not yet."""
    input:
        IMAGE_VAE_INPUT,
    output:
        run_done("inflated"),
    log:
        f"{LOGS}/inflate.log",
    benchmark:
        f"{BENCH}/inflate.tsv"
    threads: 1
    params:
        image_vae=IMAGE_VAE_PATH,
        subfolder=f"--subfolder {IMAGE_VAE_SUBFOLDER}" if IMAGE_VAE_SUBFOLDER else "",
        overrides=" ".join(
            "--set " + shlex.quote(f"{k}={json.dumps(v)}") for k, v in ((P.get("cvvae") or {}).get("model") or {}).items()
        ),
    shell:
        f"{ENV} {TIMEOUT}{CVVAE} inflate --image-vae {{params.image_vae}} {{params.subfolder}} "
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
        f"{BENCH}/train_{{run}}.tsv"
    # Training first: evaluation jobs fill the GPU slots that training leaves free.
    priority: 1
    threads: THREADS
    resources:
        gpu=TRAIN_GPUS,
    params:
        run_config=lambda wc: run_config_param(wc.run),
    shell:
        f"{ENV} {TIMEOUT}{TRAIN_CVVAE} train --config {CONFIG} --variant {{wildcards.run}} {SET_IMAGE_VAE} "
        f"--out {RUNS}/{{wildcards.run}} --if-changed restart > {{log}} 2>&1"
