# The profile this run of the workflow reads, the paths it writes to, and the helpers its rules share.

import json
import shlex
import sys
from pathlib import Path

from cvvae.preflight import missing_inputs
from cvvae.profile import ProfileError, load_profile, spec_run
from cvvae.train.config import resolve_cvvae_config, resolve_image_vae_config, to_dict

# `profile_file` reads a profile from elsewhere (a new experiment before it moves to config/).
PROFILE_FILE = Path(config.get("profile_file", Path("config") / f"{config.get('profile', 'default')}.yaml"))
if not PROFILE_FILE.is_file():
    known = sorted(p.stem for p in Path("config").glob("*.yaml") if p.stem != "schema")
    raise WorkflowError(f"no profile file {PROFILE_FILE}; choose a profile with --config profile=NAME, one of {known}")
try:
    P = load_profile(PROFILE_FILE)
except (ProfileError, FileNotFoundError) as exc:
    raise WorkflowError(str(exc)) from None
PROFILE = str(config.get("profile", P["profile"]))
if P["profile"] != PROFILE:
    raise WorkflowError(f"{PROFILE_FILE} declares profile {P['profile']!r}; it must be {PROFILE!r}")

# `results_dir` may be overridden (tests run the ci profile into a temporary folder).
RESULTS = str(config.get("results_dir", f"results/{PROFILE}")).rstrip("/")
RUNS = f"{RESULTS}/runs"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
W = P["workflow"]
GPU = 1 if W["gpu"] else 0
THREADS = int(W["threads"])
DEVICE = W.get("device", "auto")
TIMEOUT = f"timeout {int(W['timeout_min']) * 60}s " if W.get("timeout_min") else ""
PY = shlex.quote(sys.executable)
CVVAE = f"{PY} -m cvvae.cli"
# Training jobs of several processes: one per GPU through accelerate (DDP). NVLink multicast (NVLS) stays off.
PROCESSES = int(W.get("processes", 1))
TRAIN_CVVAE = (
    f"NCCL_NVLS_ENABLE=0 {PY} -m accelerate.commands.launch --num_processes {PROCESSES} --multi_gpu "
    "-m cvvae.cli"
    if PROCESSES > 1
    else CVVAE
)
TRAIN_GPUS = GPU * PROCESSES
CONFIG = str(PROFILE_FILE)
DATA_ROOT = P["data"]["root"]
DATA_MANIFEST = f"{DATA_ROOT}/manifest.csv"
# Every notebook of notebooks/ is part of the study (a notebook without inputs of its profile says n/a).
NOTEBOOKS = sorted(p.stem for p in Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
# Torch threads follow the job's thread count, so parallel jobs do not oversubscribe the cores.
ENV = "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} PYTHONHASHSEED=0"

wildcard_constraints:
    run="[A-Za-z0-9_]+",
    model="[A-Za-z0-9_]+",
    protocol="[A-Za-z0-9_]+",
    notebook="[0-9]{2}_[a-z_]+",


def resolve_spec(name):
    """The autoencoder spec of study model `name`, with {runs} filled in."""
    return P["evaluate"]["models"][name].replace("{runs}", RUNS)


def run_done(run):
    """The file that marks run `run` as finished (the diffusers folder's config.json)."""
    return f"{RUNS}/{run}/final/config.json"


def check_runs():
    """Every run a model spec points at must be produced by this profile's workflow section (the rest of the
    profile's consistency is checked by cvvae.profile)."""
    produced = set(W["variants"]) | ({"image_vae"} if W["train_image_vae"] else set())
    produced |= {"inflated"} if W["inflate"] else set()
    for name in P["evaluate"]["models"]:
        run = spec_run(P["evaluate"]["models"][name])
        if run is not None and run not in produced:
            raise WorkflowError(
                f"evaluate.models.{name} reads run {run!r}, which profile {PROFILE} does not produce; add it to "
                f"workflow.variants (or enable train_image_vae / inflate)"
            )


check_runs()

# Real inputs the user provides (datasets, weights, metric networks): all named now, before any job starts.
MISSING = missing_inputs(P)
if MISSING:
    raise WorkflowError(
        f"profile {PROFILE} cannot run: {len(MISSING)} input(s) missing:\n- " + "\n- ".join(MISSING)
    )


def eval_csv(protocol, model):
    return f"{RESULTS}/eval/{protocol}/{model}/per_clip.csv"


ALL_EVALS = [eval_csv(proto, m) for proto, models in P["evaluate"]["matrix"].items() for m in models]
DATA_INPUT = [DATA_MANIFEST] if W["build_data"] else []
IMAGE_VAE_INPUT = [run_done("image_vae")] if W["train_image_vae"] else []
# Runs whose image-VAE path must be redirected when results_dir is overridden.
SET_IMAGE_VAE = f"--set cvvae.image_vae_path={RUNS}/image_vae/final" if W["train_image_vae"] else ""
# The frozen image VAE: this profile's pretrained one, or a released one named in cvvae.image_vae_path.
IMAGE_VAE_PATH = f"{RUNS}/image_vae/final" if W["train_image_vae"] else (P.get("cvvae") or {}).get("image_vae_path", "")
IMAGE_VAE_SUBFOLDER = None if W["train_image_vae"] else (P.get("cvvae") or {}).get("image_vae_subfolder")


def run_config_param(run):
    """The resolved config of training run `run` as text: a params value, so that Snakemake reruns the job when
    it changes (the job itself then restarts, see cvvae.train.run_identity)."""
    resolved = resolve_image_vae_config(P) if run == "image_vae" else resolve_cvvae_config(P, run)
    return json.dumps(to_dict(resolved), sort_keys=True)


# Rules depend on the part of the profile they read, as a `params` value (Snakemake reruns a job when its
# params change), not on the profile file: editing one variant reruns that variant's branch only.
def section_param(*keys):
    value = P
    for key in keys:
        value = (value or {}).get(key)
    return json.dumps(value, sort_keys=True)


def evaluate_input(wildcards):
    run = spec_run(P["evaluate"]["models"][wildcards.model])
    return [*DATA_INPUT, *IMAGE_VAE_INPUT, *([run_done(run)] if run else [])]


# Latent compatibility is measured against the frozen image VAE of the profile (given explicitly, so that an
# overridden results_dir is followed).
if IMAGE_VAE_PATH:
    IMAGE_VAE_SPEC = f"image_vae:{IMAGE_VAE_PATH}" + (f"?subfolder={IMAGE_VAE_SUBFOLDER}" if IMAGE_VAE_SUBFOLDER else "")
else:
    IMAGE_VAE_SPEC = "none"


def evaluate_args(wildcards):
    extra = list(P["evaluate"].get("args", {}).get(wildcards.protocol, []))
    extra += list(P["evaluate"].get("model_args", {}).get(wildcards.model, []))
    return " ".join(shlex.quote(str(a)) for a in extra)


def notebook_input(wildcards):
    runs = [run_done(r) for r in W["variants"]] if wildcards.notebook == "05_latent_alignment" else []
    return [f"notebooks/{wildcards.notebook}.ipynb", *ALL_EVALS, *runs]
