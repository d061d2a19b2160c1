"""CV-VAE video autoencoders: build data, train, evaluate, benchmark, inflate image VAEs, report.

Each sub-command lives in the module that does the work; this file only wires them up, importing lazily so
that `cvvae --help` stays fast and a missing optional dependency only breaks the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cvvae import __version__

# Errors that mean "the input is wrong" rather than "the program is wrong": shown as one line, exit status 2
# (as argparse does for bad arguments); --debug shows the traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    PermissionError,
    ImportError,
)
USER_ERROR_EXIT = 2

# name -> (module, help). The module exposes `add_arguments(parser)` and `run(args) -> int | None`.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("cvvae.data.cli", "build the embedded dataset, inspect manifests"),
    "train-image-vae": ("cvvae.train.image_vae_cli", "pretrain a small image VAE (diffusers AutoencoderKL)"),
    "train": ("cvvae.train.cli", "train a CV-VAE with latent regularisation"),
    "train-ldm": ("cvvae.ldm.cli", "train a small latent diffusion model on the frozen image VAE's latents"),
    "evaluate": ("cvvae.evaluate", "reconstruct a dataset with an autoencoder and write metric tables"),
    "bench": ("cvvae.bench", "encode/decode time and peak memory per autoencoder"),
    "weights": ("cvvae.metrics.weights", "install metric weights (LPIPS backbones) for offline use"),
    "inflate": ("cvvae.models.inflate", "inflate an image VAE into a CV-VAE and save it"),
    "env": ("cvvae.env_info", "print versions, CUDA, GPUs, CPU and BLAS (paste into bug reports)"),
    "report": ("cvvae.report", "assemble results/<profile>/README.md from tables, figures and run logs"),
    "notebook": (
        "cvvae.notebook_run",
        "execute study notebooks, publishing their tables and figures on success",
    ),
}


EXAMPLES = """examples:
  cvvae data embedded --config config/default.yaml --out data/embedded/default
  cvvae train --config config/default.yaml --variant dec --out results/default/runs/dec
  cvvae evaluate --model 'cvvae:CV-VAE?subfolder=vae3d' --config config/paper.yaml --protocol paper --out eval
  cvvae bench --random-weights --shapes 17x256x256 --dtypes fp32,bf16
  cvvae inflate --image-vae weights/sd21/vae --out weights/cvvae_inflated
  cvvae env                 versions, CUDA, GPUs, CPU and BLAS, to paste into a bug report

`cvvae COMMAND --help` lists a command's options and their defaults."""


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help, unless the help already names it or there is none to show
    (None, False, an empty list: the option is off or required)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
        ):
            return action.help
        return f"{text} (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvvae",
        description=__doc__.splitlines()[0],
        epilog=EXAMPLES + "\nAdd --debug to any command to see the traceback of an error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples' lines
    )
    parser.add_argument("-V", "--version", action="version", version=f"cvvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(f"cvvae {__version__}")
        return 0
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in {"-h", "--help"}:
            parser.error(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(
            prog=f"cvvae {name}", description=help_text, formatter_class=DefaultsHelpFormatter
        )
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return int(module.run(args) or 0)
    except USER_ERRORS as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"cvvae {name}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
