"""``python -m cvvae.ldm STEP``: the steps of the generative-compatibility measurement of a profile.

train      = ``cvvae train-ldm``
sample     N latents of the trained model (``ldm.sample``) -> OUT/latents.safetensors
decode     those latents through each of ``ldm.decoders`` (or --decoder NAME=SPEC) -> OUT/decoded/, grids/
reference  held-out images (``ldm.score.reference_*``) -> OUT/reference/
score      FID/KID/PSNR of every decoded folder -> OUT/metrics.csv
video      consecutive samples as one latent video through each of ``ldm.video.decoders`` (paper Fig. 6)
           -> OUT/video/
"""

from __future__ import annotations

import argparse
import sys

from cvvae.ldm import cli as train_cli


def _profile_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="profile YAML, e.g. config/gpu.yaml")
    parser.add_argument("--out", required=True, help="generative folder, e.g. results/gpu/generative")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="DOTTED.KEY=VALUE")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cvvae.ldm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    train_cli.add_arguments(sub.add_parser("train", help="train the LDM (cvvae train-ldm)"))
    sample = sub.add_parser("sample", help="sample latents once")
    _profile_args(sample)
    sample.add_argument("--model", required=True, help="trained LDM folder (a train-ldm run's final/)")
    decode = sub.add_parser("decode", help="decode the latents with each decoder")
    _profile_args(decode)
    decode.add_argument("--decoder", action="append", default=[], metavar="NAME=SPEC",
                        help="decoder instead of ldm.decoders (repeatable)")  # fmt: skip
    decode.add_argument(
        "--runs", default=None, help="what {runs} stands for (default: results/<profile>/runs)"
    )
    video = sub.add_parser("video", help="consecutive samples decoded as one CV-VAE latent video")
    _profile_args(video)
    video.add_argument("--decoder", action="append", default=[], metavar="NAME=SPEC",
                       help="video-mode decoder instead of ldm.video.decoders (repeatable)")  # fmt: skip
    video.add_argument("--image-vae", default=None, metavar="SPEC",
                       help="image VAE to compare with (default: ldm.video.image_vae)")  # fmt: skip
    video.add_argument(
        "--runs", default=None, help="what {runs} stands for (default: results/<profile>/runs)"
    )
    reference = sub.add_parser("reference", help="write the held-out reference images")
    _profile_args(reference)
    feats = sub.add_parser("features", help="Inception features and pairwise metrics of the decoded folders")
    _profile_args(feats)
    feats.add_argument("--reference-decoder", default=None, help="decoder the others are compared with")
    score = sub.add_parser("score", help="FID/KID/PSNR of the decoded folders")
    _profile_args(score)
    score.add_argument("--reference-decoder", default=None, help="decoder the others are compared with")
    score.add_argument(
        "--from-features", action="store_true",
        help="score the files of an earlier `features` step (made where the images and the network were)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.step == "train":
        return train_cli.run(args)
    import torch

    from cvvae.ldm.config import resolve_ldm_config, resolve_section
    from cvvae.train.cli import load_checked_profile

    profile = load_checked_profile(args.config, args.overrides)
    section = resolve_section(profile, args.overrides)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.step == "sample":
        from cvvae.ldm.sample import sample_to_file

        print(sample_to_file(args.model, f"{args.out}/latents.safetensors", section.sample, device))
    elif args.step == "decode":
        from cvvae.ldm.decode import decode_to_folder, decoder_from_spec, decoder_run_identity

        specs = dict(item.split("=", 1) for item in args.decoder) if args.decoder else section.decoders
        if not specs:
            raise ValueError("no decoders: set ldm.decoders in the profile or pass --decoder NAME=SPEC")
        runs = args.runs or f"results/{profile['profile']}/runs"
        for name, spec in specs.items():
            decoder = decoder_from_spec(spec, runs, device)
            images = decode_to_folder(
                args.out,
                name,
                decoder,
                spec=spec,
                grid_samples=section.score.grid_samples,
                run_identity=decoder_run_identity(spec, runs),
            )
            print(f"{name}: {len(images)} images")
    elif args.step == "video":
        from cvvae.ldm.video import default_image_vae_spec, run_video_step

        config = section.video
        specs = dict(item.split("=", 1) for item in args.decoder) if args.decoder else config.decoders
        image_vae = args.image_vae or config.image_vae or default_image_vae_spec(section)
        runs = args.runs or f"results/{profile['profile']}/runs"
        summary = run_video_step(args.out, specs, runs, config, image_vae, device)
        print(summary.drop(columns=["decoder_run_identity"]).to_string(index=False))
    elif args.step == "reference":
        from cvvae.ldm.data import centre_crops
        from cvvae.ldm.decode import write_reference

        run = resolve_ldm_config(profile, args.overrides)
        score = section.score
        images = centre_crops(run.data, score.reference_split, run.train.resolution, score.reference_images,
                              score.reference_video_frames, run.seed)  # fmt: skip
        print(write_reference(args.out, images, score.grid_samples), f"{len(images)} images")
    elif args.step == "features":
        from cvvae.ldm.score import write_features

        folder = write_features(
            args.out, reference_decoder=args.reference_decoder, config=section.score, device=device
        )
        print(folder)
    else:
        from cvvae.ldm.score import score_features, score_folder

        if args.from_features:
            table = score_features(args.out, config=section.score)
        else:
            table = score_folder(
                args.out, reference_decoder=args.reference_decoder, config=section.score, device=device
            )
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
