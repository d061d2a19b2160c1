rule notebook:
    """Execute one notebook with papermill (`cvvae notebook`): its executed copy, tables/ and figures/ are
    published together when it succeeds; `update` keeps the previous copy in place while it runs or if it fails."""
    input:
        notebook_input,
    output:
        update(f"{RESULTS}/notebooks/{{notebook}}.ipynb"),
    params:
        notebook=lambda wc: json.dumps(P["notebooks"].get(wc.notebook) or {}, sort_keys=True),
        common=json.dumps(P["notebooks"].get("common") or {}, sort_keys=True),
    log:
        f"{LOGS}/notebook_{{notebook}}.log",
    benchmark:
        f"{BENCH}/notebook_{{notebook}}.tsv"
    threads: 1
    shell:
        f"{ENV} {TIMEOUT}{CVVAE} notebook {{wildcards.notebook}} --config {CONFIG} --results {RESULTS} "
        f"> {{log}} 2>&1"
