rule report:
    """Assemble results/<profile>/README.md from the tables, figures, run metadata and benchmark times."""
    input:
        expand(f"{RESULTS}/notebooks/{{notebook}}.ipynb", notebook=NOTEBOOKS),
    output:
        update(f"{RESULTS}/README.md"),
    params:
        description=section_param("description"),
    log:
        f"{LOGS}/report.log",
    shell:
        f"{PYTHON} -m cvvae.report --config {PROFILE_FILE} --results {RESULTS} > {{log}} 2>&1"


# The run ends at the report: say where it is, or where the log of a failed job is.
onsuccess:
    print(f"\nDone: the report of profile {PROFILE_NAME} is {RESULTS}/README.md (tables in {RESULTS}/tables/).")


onerror:
    print(f"\nA job failed: its log is under {LOGS}/ (earlier results in {RESULTS}/ were left as they were).")
