"""The claims' intervals resample independent sources and seeds, and a reconstruction claim is judged only
when each trained run beat the model it starts from (paired interval). Tiny synthetic per-clip CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvvae import claims

STILLS = ["coffee", "gravel", "camera", "flower", "grace_hopper", "opencv_baboon"]
MOTIONS = ["zoom", "pan", "rotate", "mixed", "zoom"]


def camera_clips(stills: list[str] = STILLS, per_still: int = 5) -> list[str]:
    """Clip ids as cvvae.data.embedded names camera clips: ``per_still`` clips of each still."""
    names = []
    for still in stills:
        for k in range(per_still):
            names.append(f"val_camera_{len(names):04d}_{still}_{MOTIONS[k % len(MOTIONS)]}")
    return names


def write_eval(results: Path, protocol: str, model: str, clips: list[str], **columns) -> Path:
    folder = results / "eval" / protocol / model
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "per_clip.csv"
    pd.DataFrame({"clip_id": clips, **columns}).to_csv(path, index=False)
    return path


def per_source(values: list[float], per_still: int = 5) -> np.ndarray:
    """One value per source, repeated for each of its clips: clips of one source perfectly correlated."""
    return np.repeat(np.asarray(values, dtype=float), per_still)


def width(ci: tuple[float, float]) -> float:
    return ci[1] - ci[0]


# ------------------------------------------------------------------ telling a clip's source


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("val_camera_0000_coffee_zoom", "coffee"),
        ("val_camera_0007_grace_hopper_mixed", "grace_hopper"),  # a source name with an underscore
        ("train_camera_0001_clock_motion_rotate", "clock_motion"),
        ("val_real_0003_carphone_f8", "carphone"),
        ("val_real_0000_opencv_vtest_f120", "opencv_vtest"),
        ("val_0012_coffee", "coffee"),
        ("v_ApplyEyeMakeup_g01_c03", "v_ApplyEyeMakeup_g01"),
        ("1066674250", None),  # a WebVid video id: one file per video
        ("video123", None),
        ("clip_00", None),
    ],
)
def test_clip_source_reads_the_data_packages_file_names(name: str, source: str | None) -> None:
    assert claims.clip_source(name) == source


def test_camera_motions_are_those_of_the_data_package() -> None:
    from cvvae.data.motion import MOTION_TYPES

    assert tuple(claims.CAMERA_MOTIONS) == tuple(MOTION_TYPES)


def test_clusters_count_sources_and_say_when_sources_are_unknown() -> None:
    clusters = claims.clip_clusters(camera_clips(STILLS[:4], 3) + ["val_real_0000_carphone_f1"])
    assert clusters.count == 5 and clusters.unknown == 0
    assert clusters.describe() == "13 clips from 5 sources"
    unknown = claims.clip_clusters(["a", "b", "c"])
    assert unknown.count == 3 and unknown.describe() == "3 clips (source unknown: one cluster per clip)"
    mixed = claims.clip_clusters(["val_0000_coffee", "val_0001_coffee", "coffee"])
    # a clip id that names no source never joins a source of the same name
    assert (
        mixed.count == 2
        and mixed.describe() == "3 clips from 2 sources (1 of unknown source, one cluster each)"
    )


def test_a_source_column_wins_and_a_path_is_read_when_the_id_names_nothing(tmp_path: Path) -> None:
    clips = ["0", "1", "2", "3"]  # ids that name no source (e.g. a dataset's item index)
    paths = ["x/val_real_0000_bikes_f1.mp4", "x/val_real_0001_bikes_f9.mp4", "x/val_0002_coffee.png", "q.mp4"]
    csv = write_eval(tmp_path, "video", "a", clips, psnr=[1.0] * 4, path=paths)
    clusters = claims.clusters_of([csv], clips)
    assert clusters.codes[0] == clusters.codes[1]  # two clips cut from the bikes video
    assert clusters.count == 3 and clusters.unknown == 1
    recorded = write_eval(tmp_path, "video", "b", clips, psnr=[1.0] * 4, source=["v1", "v1", "v1", "v2"])
    clusters = claims.clusters_of([recorded, csv], clips)
    assert clusters.count == 2 and clusters.unknown == 0


# ------------------------------------------------------------------ the seed x source bootstrap


def test_clustered_interval_is_wider_when_clips_of_a_source_are_perfectly_correlated() -> None:
    diffs = per_source([1.2, -0.6, 1.5, -0.4, 0.3, 0.9])  # 30 clips, 6 sources, no spread within a source
    clusters = claims.clip_clusters(camera_clips())
    assert clusters.count == 6
    clustered = claims.cluster_bootstrap_ci(diffs, clusters.codes)
    per_clip = claims.bootstrap_ci(diffs)
    # 6 independent values, not 30: the spread of the mean is about sqrt(30 / 6) = 2.2 times larger
    assert width(clustered) > 1.8 * width(per_clip)
    assert per_clip[0] > 0 > clustered[0]  # the per-clip interval would claim an effect that is not there


def test_one_clip_per_source_and_one_seed_is_the_plain_bootstrap() -> None:
    values = np.random.default_rng(5).normal(0.5, 1.0, 15)
    clustered = claims.cluster_bootstrap_ci(values, np.arange(15))
    assert clustered == pytest.approx(claims.bootstrap_ci(values), abs=1e-12)


def test_cluster_bootstrap_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    diffs, labels = rng.normal(0.3, 1.0, (40, 3)), rng.integers(0, 8, 40)
    first = claims.cluster_bootstrap_ci(diffs, labels)
    assert first == claims.cluster_bootstrap_ci(diffs.copy(), labels.copy())
    assert claims.cluster_bootstrap_ci(diffs, labels, seed=1) != first
    assert claims.cluster_bootstrap_ci(diffs, [f"s{k}" for k in labels]) == first  # labels are only names
    assert all(np.isnan(claims.cluster_bootstrap_ci(diffs, np.zeros(40))))  # one source: no spread known
    with pytest.raises(ValueError, match="one label per clip"):
        claims.cluster_bootstrap_ci(diffs, labels[:-1])


def test_seed_resampling_widens_the_interval_when_seeds_disagree() -> None:
    rng = np.random.default_rng(2)
    clip_effect = rng.normal(1.0, 0.3, 30)
    codes = claims.clip_clusters(camera_clips()).codes
    agreeing = np.stack([clip_effect] * 3, axis=1)
    disagreeing = clip_effect[:, None] + np.array([-0.8, 0.0, 0.8])  # same seed-average per clip
    averaged = claims.cluster_bootstrap_ci(clip_effect, codes)
    assert claims.cluster_bootstrap_ci(agreeing, codes) == pytest.approx(averaged, abs=1e-12)
    assert width(claims.cluster_bootstrap_ci(disagreeing, codes)) > 1.5 * width(averaged)


def test_claim_text_reports_clips_sources_and_seeds_and_is_byte_stable(tmp_path: Path) -> None:
    clips = camera_clips()
    b = np.linspace(18.0, 22.0, len(clips))
    write_eval(tmp_path, "video", "b", clips, psnr=b)
    for seed, shift in enumerate([1.0, 1.2, 0.9]):
        write_eval(tmp_path, "video", "a" if seed == 0 else f"a_seed{seed}", clips, psnr=b + shift)
    claim = claims.Claim("toy", "a beats b", "none", (claims.Comparison("a", "b", "psnr"),))
    row = claims.claims_table(tmp_path, [claim]).iloc[0]
    assert "30 clips from 6 sources, 3 seeds" in row["our measurement"]
    assert row["verdict"] == claims.REPRODUCED
    first = claims.claims_table(tmp_path, [claim]).to_csv(index=False)
    assert first == claims.claims_table(tmp_path, [claim]).to_csv(index=False)


def test_too_few_sources_give_no_verdict_however_many_clips(tmp_path: Path) -> None:
    clips = camera_clips(STILLS[:4], per_still=10)  # 40 clips, 4 stills
    b = np.linspace(18.0, 22.0, len(clips))
    write_eval(tmp_path, "video", "b", clips, psnr=b)
    write_eval(tmp_path, "video", "a", clips, psnr=b + 1.0)
    claim = claims.Claim("toy", "a beats b", "none", (claims.Comparison("a", "b", "psnr"),))
    row = claims.claims_table(tmp_path, [claim]).iloc[0]
    assert row["verdict"] == claims.INCONCLUSIVE
    assert "40 clips from 4 sources: too few independent sources" in row["why"]


# ------------------------------------------------------------------ beat its starting point (paired)


def write_converged_log(results: Path, run: str) -> None:
    folder = results / "runs_meta" / run
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": [0, 500, 1000], "psnr_video": [18.0, 22.0, 22.05]}).to_csv(
        folder / "val_metrics.csv", index=False
    )


TRAINING = claims.Training(
    runs={"cvvae": "dec", "none": "none"}, starts={"cvvae": "inflated", "none": "inflated"}
)
RECONSTRUCTION = claims.Claim("r", "dec beats none", "none", (claims.Comparison("cvvae", "none", "psnr"),))


def reconstruction_setup(results: Path, cvvae_over_inflated: np.ndarray) -> None:
    """cvvae 1 dB above none on every clip; cvvae - inflated per clip as given; both runs converged."""
    clips = camera_clips()
    inflated = np.linspace(18.0, 22.0, len(clips))
    write_eval(results, "video", "inflated", clips, psnr=inflated)
    write_eval(results, "video", "cvvae", clips, psnr=inflated + cvvae_over_inflated)
    write_eval(results, "video", "none", clips, psnr=inflated + cvvae_over_inflated - 1.0)
    for run in ("dec", "none"):
        write_converged_log(results, run)


def test_a_claim_gets_a_verdict_when_every_run_clearly_beat_its_start(tmp_path: Path) -> None:
    reconstruction_setup(
        tmp_path, per_source([2.0, 2.5, 3.0, 2.2, 2.8, 3.2])
    )  # none is 1 dB lower, still > 0
    row = claims.claims_table(tmp_path, [RECONSTRUCTION], TRAINING).iloc[0]
    assert row["verdict"] == claims.REPRODUCED
    assert "vs start: cvvae - inflated, video psnr: +2.62 dB" in row["runs"]
    assert "vs start: none - inflated" in row["runs"]


def test_a_paired_interval_against_the_start_that_contains_zero_is_not_testable(tmp_path: Path) -> None:
    # cvvae gains on average (+1.08 dB) but loses on two of six sources: the clustered interval includes 0
    reconstruction_setup(tmp_path, per_source([2.0, 2.5, 3.0, -0.5, 2.0, -2.5]))
    row = claims.claims_table(tmp_path, [RECONSTRUCTION], TRAINING).iloc[0]
    assert row["verdict"] == claims.NOT_TESTABLE
    assert "cvvae has not beaten its starting point: cvvae - inflated, video psnr: +1.08 dB" in row["why"]
    assert "30 clips from 6 sources, the CI's lower bound is not above 0" in row["why"]
    assert "measured anyway: reproduced" in row["why"]


def test_without_an_evaluation_of_the_start_the_claim_is_not_testable(tmp_path: Path) -> None:
    reconstruction_setup(tmp_path, per_source([2.0, 2.5, 3.0, 2.2, 2.8, 3.2]))
    (tmp_path / "eval" / "video" / "inflated" / "per_clip.csv").unlink()
    row = claims.claims_table(tmp_path, [RECONSTRUCTION], TRAINING).iloc[0]
    assert row["verdict"] == claims.NOT_TESTABLE
    assert "no evaluation of the starting point: video/inflated not evaluated" in row["why"]
    unknown_start = claims.Training(runs=TRAINING.runs, starts={"cvvae": None, "none": "inflated"})
    row = claims.claims_table(tmp_path, [RECONSTRUCTION], unknown_start).iloc[0]
    assert (
        "no evaluation of the starting point: the profile evaluates no model that cvvae starts from"
        in row["why"]
    )


def test_each_seed_run_must_beat_its_start(tmp_path: Path) -> None:
    reconstruction_setup(tmp_path, per_source([2.0, 2.5, 3.0, 2.2, 2.8, 3.2]))
    clips = camera_clips()
    inflated = np.linspace(18.0, 22.0, len(clips))
    write_eval(
        tmp_path, "video", "cvvae_seed1", clips, psnr=inflated + per_source([0.3, -0.4, 0.2, -0.1, 0, 0])
    )
    write_eval(tmp_path, "video", "none_seed1", clips, psnr=inflated - 1.0)
    training = claims.Training(
        runs={**TRAINING.runs, "cvvae_seed1": "dec_seed1", "none_seed1": "none_seed1"},
        starts={**TRAINING.starts, "cvvae_seed1": "inflated", "none_seed1": "inflated"},
    )
    for run in ("dec_seed1", "none_seed1"):
        write_converged_log(tmp_path, run)
    why = claims.claims_table(tmp_path, [RECONSTRUCTION], training).iloc[0]["why"]
    assert "cvvae_seed1 has not beaten its starting point" in why
    assert "none_seed1 has not beaten its starting point" in why
    assert "cvvae has not beaten" not in why  # seed 0 is judged on its own run, not pooled with seed 1


def test_a_start_comparison_on_too_few_sources_is_not_testable(tmp_path: Path) -> None:
    clips = camera_clips(STILLS[:3], per_still=10)
    inflated = np.linspace(18.0, 22.0, len(clips))
    write_eval(tmp_path, "video", "inflated", clips, psnr=inflated)
    write_eval(tmp_path, "video", "cvvae", clips, psnr=inflated + 2.0)
    write_eval(tmp_path, "video", "none", clips, psnr=inflated + 1.0)
    for run in ("dec", "none"):
        write_converged_log(tmp_path, run)
    row = claims.claims_table(tmp_path, [RECONSTRUCTION], TRAINING).iloc[0]
    assert row["verdict"] == claims.NOT_TESTABLE
    assert "cvvae not shown to beat its starting point" in row["why"] and "too few sources" in row["why"]


def test_a_profile_without_the_inflated_model_leaves_the_start_unknown() -> None:
    profile = {
        "evaluate": {
            "models": {"image_vae": "image_vae:{runs}/image_vae/final", "cvvae": "cvvae:{runs}/dec/final"}
        }
    }
    training = claims.Training.of_profile(profile)
    assert training.starts == {"cvvae": None}  # the image VAE has no evaluated start and is not checked
