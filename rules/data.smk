rule data:
    """Build the embedded dataset (real media shipped inside installed packages plus procedural video)."""
    output:
        DATA_MANIFEST,
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{BENCHMARKS}/data.tsv"
    threads: THREADS
    params:
        embedded=section_param("data", "embedded"),
    shell:
        f"{JOB_ENV} {TIMEOUT}{CVVAE_CLI} data embedded --config {PROFILE_FILE} --out {DATA_ROOT} > {{log}} 2>&1"
