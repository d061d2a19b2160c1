rule evaluate:
    """Reconstruct one protocol's clips with one autoencoder: per-clip and per-frame metric tables."""
    input:
        evaluate_input,
    output:
        eval_table("{protocol}", "{model}"),
    params:
        spec=lambda wc: shlex.quote(model_spec(wc.model)),
        extra=evaluate_args,
        protocol=lambda wc: section_param("protocols", wc.protocol),
        data=section_param("data"),
    log:
        f"{LOGS}/evaluate_{{protocol}}_{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_{{protocol}}_{{model}}.tsv"
    threads: THREADS
    # One process, so one GPU (or none).
    resources:
        gpu=GPUS_PER_PROCESS,
    shell:
        f"{JOB_ENV} {TIMEOUT}{CVVAE_CLI} evaluate --config {PROFILE_FILE} --protocol {{wildcards.protocol}} "
        f"--model {{params.spec}} --name {{wildcards.model}} "
        f"--out {RESULTS}/eval/{{wildcards.protocol}}/{{wildcards.model}} "
        f"--image-vae {shlex.quote(IMAGE_VAE_SPEC)} --device {DEVICE} --no-progress --if-changed restart "
        f"{{params.extra}} > {{log}} 2>&1"
