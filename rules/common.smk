# The profile this run of the workflow reads, the paths it writes to, and the helpers its rules share.

import json
import shlex
import sys
from pathlib import Path

from cvvae.preflight import missing_inputs
from cvvae.profile import ProfileError, frozen_image_vae, load_profile, model_runs
from cvvae.train.config import resolve_cvvae_config, resolve_image_vae_config, to_dict

# ----------------------------------------------------------------------------------------------- the profile

# `profile_file` reads a profile from elsewhere (a new experiment before it moves to config/).
PROFILE_FILE = Path(config.get("profile_file", Path("config") / f"{config.get('profile', 'default')}.yaml"))
if not PROFILE_FILE.is_file():
    known = sorted(p.stem for p in Path("config").glob("*.yaml") if p.stem != "schema")
    raise WorkflowError(f"no profile file {PROFILE_FILE}; choose a profile with --config profile=NAME, one of {known}")
try:
    profile = load_profile(PROFILE_FILE)
except (ProfileError, FileNotFoundError) as exc:
    raise WorkflowError(str(exc)) from None
PROFILE_NAME = str(config.get("profile", profile["profile"]))
if profile["profile"] != PROFILE_NAME:
    raise WorkflowError(f"{PROFILE_FILE} declares profile {profile['profile']!r}; it must be {PROFILE_NAME!r}")
# The profile's `workflow:` section (not Snakemake's own `workflow` object).
workflow_settings = profile["workflow"]
# Study model name -> the training run of this profile it is evaluated from (released weights have none).
MODEL_RUNS = model_runs(profile)

# ----------------------------------------------------------------------------------------------- paths

# `results_dir` may be overridden (tests run the ci profile into a temporary folder).
RESULTS = str(config.get("results_dir", f"results/{PROFILE_NAME}")).rstrip("/")
RUNS = f"{RESULTS}/runs"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
DATA_ROOT = profile["data"]["root"]
DATA_MANIFEST = f"{DATA_ROOT}/manifest.csv"
# Every notebook of notebooks/ is part of the study (a notebook without inputs of its profile says n/a).
NOTEBOOKS = sorted(p.stem for p in Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
# The training runs a notebook reads beyond the evaluation tables: 05 plots the validation logs of every
# trained variant. A notebook not named here reads the evaluation tables only.
NOTEBOOK_RUNS = {"05_latent_alignment": workflow_settings["variants"]}

wildcard_constraints:
    run="[A-Za-z0-9_]+",
    model="[A-Za-z0-9_]+",
    protocol="[A-Za-z0-9_]+",
    notebook="[0-9]{2}_[a-z_]+",


def run_done(run):
    """The file that marks run `run` as finished (the diffusers folder's config.json)."""
    return f"{RUNS}/{run}/final/config.json"


def eval_table(protocol, model):
    """The per-clip table of one evaluation."""
    return f"{RESULTS}/eval/{protocol}/{model}/per_clip.csv"


EVAL_TABLES = [eval_table(proto, m) for proto, models in profile["evaluate"]["matrix"].items() for m in models]

# ----------------------------------------------------------------------------------------------- commands

GPUS_PER_PROCESS = 1 if workflow_settings["gpu"] else 0
THREADS = int(workflow_settings["threads"])
DEVICE = workflow_settings.get("device", "auto")
TIMEOUT = f"timeout {int(workflow_settings['timeout_min']) * 60}s " if workflow_settings.get("timeout_min") else ""
PYTHON = shlex.quote(sys.executable)
CVVAE_CLI = f"{PYTHON} -m cvvae.cli"
# Training jobs of several processes: one per GPU through accelerate (DDP). NVLink multicast (NVLS) stays off.
PROCESSES = int(workflow_settings.get("processes", 1))
TRAIN_CLI = (
    f"NCCL_NVLS_ENABLE=0 {PYTHON} -m accelerate.commands.launch --num_processes {PROCESSES} --multi_gpu "
    "-m cvvae.cli"
    if PROCESSES > 1
    else CVVAE_CLI
)
TRAIN_GPUS = GPUS_PER_PROCESS * PROCESSES
# Torch threads follow the job's thread count, so parallel jobs do not oversubscribe the cores.
JOB_ENV = "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} PYTHONHASHSEED=0"

# ----------------------------------------------------------------------------------------------- checks


def check_model_runs():
    """Every run a model spec points at must be produced by this profile's workflow section (the rest of the
    profile's consistency is checked by cvvae.profile)."""
    produced = set(workflow_settings["variants"])
    produced |= {"image_vae"} if workflow_settings["train_image_vae"] else set()
    produced |= {"inflated"} if workflow_settings["inflate"] else set()
    for name, run in MODEL_RUNS.items():
        if run not in produced:
            raise WorkflowError(
                f"evaluate.models.{name} reads run {run!r}, which profile {PROFILE_NAME} does not produce; add it "
                f"to workflow.variants (or enable train_image_vae / inflate)"
            )


def check_real_inputs():
    """Real inputs the user provides (datasets, weights, metric networks): all named now, before any job starts."""
    missing = missing_inputs(profile)
    if missing:
        raise WorkflowError(
            f"profile {PROFILE_NAME} cannot run: {len(missing)} input(s) missing:\n- " + "\n- ".join(missing)
        )


def check_notebook_runs():
    """NOTEBOOK_RUNS names notebooks of notebooks/ (a renamed notebook would otherwise lose its inputs)."""
    unknown = sorted(set(NOTEBOOK_RUNS) - set(NOTEBOOKS))
    if unknown:
        raise WorkflowError(f"NOTEBOOK_RUNS names notebooks that notebooks/ lacks: {unknown}")


check_model_runs()
check_notebook_runs()
check_real_inputs()

# ----------------------------------------------------------------------------------------------- inputs

DATA_INPUT = [DATA_MANIFEST] if workflow_settings["build_data"] else []
IMAGE_VAE_INPUT = [run_done("image_vae")] if workflow_settings["train_image_vae"] else []


def evaluate_input(wildcards):
    run = MODEL_RUNS.get(wildcards.model)
    return [*DATA_INPUT, *IMAGE_VAE_INPUT, *([run_done(run)] if run else [])]


def notebook_input(wildcards):
    runs = NOTEBOOK_RUNS.get(wildcards.notebook, [])
    return [f"notebooks/{wildcards.notebook}.ipynb", *EVAL_TABLES, *map(run_done, runs)]


# ----------------------------------------------------------------------------------------------- the image VAE

# The frozen image VAE (regularisation target, compatibility reference): in this run's runs folder when the
# profile pretrains it, so that an overridden results_dir is followed; else the released one the profile names.
IMAGE_VAE = frozen_image_vae(profile, runs_dir=RUNS)
# Latent compatibility is measured against it ("none": there is no image VAE, so it is not measured).
IMAGE_VAE_SPEC = IMAGE_VAE.spec or "none"
# Training runs read the image VAE from cvvae.image_vae_path: redirected when results_dir is overridden.
SET_IMAGE_VAE = f"--set cvvae.image_vae_path={IMAGE_VAE.path}" if workflow_settings["train_image_vae"] else ""

# ----------------------------------------------------------------------------------------------- params


# Rules depend on the part of the profile they read, as a `params` value (Snakemake reruns a job when its
# params change), not on the profile file: editing one variant reruns that variant's branch only.
def section_param(*keys):
    """The profile section at `keys` as text ("null" where it is absent)."""
    value = profile
    for key in keys:
        value = (value or {}).get(key)
    return json.dumps(value, sort_keys=True)


def run_config_param(run):
    """The resolved config of training run `run` as text: a params value, so that Snakemake reruns the job when
    it changes (the job itself then restarts, see cvvae.train.run_identity)."""
    resolved = resolve_image_vae_config(profile) if run == "image_vae" else resolve_cvvae_config(profile, run)
    return json.dumps(to_dict(resolved), sort_keys=True)


def model_spec(name):
    """The autoencoder spec of study model `name`, with {runs} filled in."""
    return profile["evaluate"]["models"][name].replace("{runs}", RUNS)


def evaluate_args(wildcards):
    """The profile's extra `cvvae evaluate` arguments of this protocol and of this model."""
    extra = list(profile["evaluate"].get("args", {}).get(wildcards.protocol, []))
    extra += list(profile["evaluate"].get("model_args", {}).get(wildcards.model, []))
    return " ".join(shlex.quote(str(a)) for a in extra)


def inflate_overrides():
    """The profile's cvvae.model settings as `cvvae inflate --set` arguments."""
    model = (profile.get("cvvae") or {}).get("model") or {}
    return " ".join("--set " + shlex.quote(f"{key}={json.dumps(value)}") for key, value in model.items())


def notebook_param(notebook):
    """The profile's parameters of one notebook (or the common ones) as text."""
    return json.dumps(profile["notebooks"].get(notebook) or {}, sort_keys=True)
