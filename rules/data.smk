rule data:
    """Build the embedded dataset (real media shipped inside installed packages plus procedural video)."""
    output:
        DATA_MANIFEST,
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{BENCH}/data.tsv"
    threads: THREADS
    params:
        embedded=section_param("data", "embedded"),
    shell:
        f"{ENV} {TIMEOUT}{CVVAE} data embedded --config {CONFIG} --out {DATA_ROOT} > {{log}} 2>&1"
