rule notebook:
    """Execute one notebook with papermill (`cvvae notebook`): its executed copy, tables/ and figures/ are
    published together when it succeeds; `update` keeps the previous copy in place while it runs or if it fails."""
    input:
        notebook_input,
    output:
        update(f"{RESULTS}/notebooks/{{notebook}}.ipynb"),
    params:
        notebook=lambda wc: notebook_param(wc.notebook),
        common=notebook_param("common"),
    log:
        f"{LOGS}/notebook_{{notebook}}.log",
    benchmark:
        f"{BENCHMARKS}/notebook_{{notebook}}.tsv"
    threads: 1
    shell:
        f"{JOB_ENV} {TIMEOUT}{CVVAE_CLI} notebook {{wildcards.notebook}} --config {PROFILE_FILE} --results {RESULTS} "
        f"> {{log}} 2>&1"
