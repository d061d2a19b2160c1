"""Claim-by-claim verdicts on synthetic per-clip results: each verdict path, seeds, bootstrap, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cvvae import claims, report

CLIPS = [f"clip_{i:02d}" for i in range(10)]


def write_clips(results: Path, protocol: str, model: str, **metrics: np.ndarray) -> None:
    """One evaluated model: ``eval/<protocol>/<model>/per_clip.csv`` with the given per-clip metrics."""
    folder = results / "eval" / protocol / model
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"clip_id": CLIPS[: len(next(iter(metrics.values())))], **metrics}).to_csv(
        folder / "per_clip.csv", index=False
    )


def base_psnr(seed: int = 0) -> np.ndarray:
    return 20.0 + np.random.default_rng(seed).normal(0.0, 2.0, len(CLIPS))


def noise(seed: int, scale: float = 0.1) -> np.ndarray:
    return np.random.default_rng(100 + seed).normal(0.0, scale, len(CLIPS))


A_BEATS_B = claims.Claim(
    id="toy", claim="a beats b", evidence="none", comparisons=(claims.Comparison("a", "b", "psnr"),)
)


def verdict_row(results: Path, claim: claims.Claim = A_BEATS_B) -> pd.Series:
    table = claims.claims_table(results, [claim])
    assert len(table) == 1
    return table.iloc[0]


def test_reproduced_when_the_difference_has_the_papers_sign(tmp_path: Path) -> None:
    b = base_psnr()
    write_clips(tmp_path, "video", "b", psnr=b)
    write_clips(tmp_path, "video", "a", psnr=b + 1.0 + noise(0))
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.REPRODUCED
    assert claims.ONE_SEED in row["why"]
    assert "+1.0" in row["our measurement"] and "10 clips" in row["our measurement"]


def test_not_reproduced_when_the_difference_has_the_opposite_sign(tmp_path: Path) -> None:
    b = base_psnr()
    write_clips(tmp_path, "video", "b", psnr=b)
    write_clips(tmp_path, "video", "a", psnr=b - 1.0 + noise(0))
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.NOT_REPRODUCED
    assert "opposite side" in row["why"]


def test_lower_is_better_comparisons_flip_the_direction(tmp_path: Path) -> None:
    b = np.full(len(CLIPS), 0.5)
    write_clips(tmp_path, "video", "b", latent_mse=b)
    write_clips(tmp_path, "video", "a", latent_mse=b - 0.2 + noise(0, 0.01))
    lower = claims.Claim("toy", "a closer", "none", (claims.Comparison("a", "b", "latent_mse", expect="<"),))
    assert verdict_row(tmp_path, lower)["verdict"] == claims.REPRODUCED


def test_inconclusive_when_the_ci_contains_zero(tmp_path: Path) -> None:
    b = base_psnr()
    alternating = np.where(np.arange(len(CLIPS)) % 2 == 0, 1.0, -1.0)
    write_clips(tmp_path, "video", "b", psnr=b)
    write_clips(tmp_path, "video", "a", psnr=b + alternating + noise(0))
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.INCONCLUSIVE
    assert "contains 0" in row["why"] and claims.ONE_SEED in row["why"]


def test_inconclusive_with_too_few_clips_even_if_all_agree(tmp_path: Path) -> None:
    n = claims.MIN_SOURCES - 1
    b = base_psnr()[:n]
    write_clips(tmp_path, "video", "b", psnr=b)
    write_clips(tmp_path, "video", "a", psnr=b + 1.0 + noise(0)[:n])
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.INCONCLUSIVE
    assert f"{n} clips (source unknown: one cluster per clip): too few independent sources" in row["why"]


def test_inconclusive_when_seeds_disagree_and_seeds_are_paired(tmp_path: Path) -> None:
    b0, b1 = base_psnr(0), base_psnr(1)
    write_clips(tmp_path, "video", "b", psnr=b0)
    write_clips(tmp_path, "video", "b_seed1", psnr=b1)
    write_clips(tmp_path, "video", "a", psnr=b0 + 1.0 + noise(0))
    write_clips(tmp_path, "video", "a_seed1", psnr=b1 - 0.5 + noise(1))
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.INCONCLUSIVE
    assert "seeds disagree" in row["why"]
    assert "2 seeds" in row["our measurement"] and "spread 1.5" in row["our measurement"]


def test_two_agreeing_seeds_reproduce_and_report_the_spread(tmp_path: Path) -> None:
    b = base_psnr()
    write_clips(tmp_path, "video", "b", psnr=b)  # a baseline with one run is paired with every seed of a
    write_clips(tmp_path, "video", "a", psnr=b + 1.0 + noise(0))
    write_clips(tmp_path, "video", "a_seed1", psnr=b + 0.6 + noise(1))
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.REPRODUCED
    assert claims.ONE_SEED not in row["why"]
    assert "2 seeds" in row["our measurement"]


def test_seed_variants_do_not_mistake_other_models_for_seeds(tmp_path: Path) -> None:
    for model in ["dec", "dec_first", "dec_seed1", "dec_first_seed1", "dec_seed12"]:
        write_clips(tmp_path, "video", model, psnr=base_psnr())
    found = claims.seed_variants(tmp_path, "video", "dec")
    assert sorted(found) == [0, 1, 12]
    assert found[1].parent.name == "dec_seed1"
    assert sorted(claims.seed_variants(tmp_path, "video", "dec_first")) == [0, 1]


def test_missing_model_or_metric_is_na_with_the_reason(tmp_path: Path) -> None:
    write_clips(tmp_path, "video", "a", psnr=base_psnr())
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.NOT_AVAILABLE
    assert "video/b not evaluated" in row["why"]
    write_clips(tmp_path, "video", "b", ssim=np.full(len(CLIPS), 0.5))
    row = verdict_row(tmp_path)
    assert row["verdict"] == claims.NOT_AVAILABLE and "no psnr column" in row["why"]


def test_bootstrap_is_deterministic_and_covers_the_mean() -> None:
    values = np.random.default_rng(3).normal(1.0, 1.0, 12)
    first, second = claims.bootstrap_ci(values), claims.bootstrap_ci(values)
    assert first == second
    assert first[0] < values.mean() < first[1]
    assert claims.bootstrap_ci(values, seed=1) != first  # the seed is what makes it repeatable
    assert all(np.isnan(claims.bootstrap_ci(values[:1])))


def test_a_conjunction_fails_when_any_comparison_fails(tmp_path: Path) -> None:
    b = base_psnr()
    write_clips(tmp_path, "video", "a", psnr=b + 1.0)
    write_clips(tmp_path, "video", "worse", psnr=b + noise(0))
    write_clips(tmp_path, "video", "better", psnr=b + 2.0 + noise(1))
    best = claims.Claim(
        "toy", "a best", "none", tuple(claims.Comparison("a", m, "psnr") for m in ("worse", "better"))
    )
    row = verdict_row(tmp_path, best)
    assert row["verdict"] == claims.NOT_REPRODUCED
    assert "vs worse psnr: reproduced" in row["why"] and "vs better psnr: not reproduced" in row["why"]


def _only(claim_id: str) -> list[claims.Claim]:
    return [c for c in claims.default_claims() if c.id == claim_id]


@pytest.mark.parametrize(("gap", "expected"), [(0.8, claims.REPRODUCED), (3.0, claims.NOT_REPRODUCED)])
def test_table1_gap_is_judged_against_the_papers_gap_plus_tolerance(
    tmp_path: Path, gap: float, expected: str
) -> None:
    assert claims.table1_tolerance_db() == pytest.approx(1.0)  # 2 x (28.5 - 28.0) from Tables 1, 6, 7
    b = base_psnr()
    write_clips(tmp_path, "video", "image_vae", psnr=b, latent_frames=np.full(len(CLIPS), 17))
    write_clips(tmp_path, "video", "cvvae", psnr=b - gap + noise(0), latent_frames=np.full(len(CLIPS), 5))
    row = claims.claims_table(tmp_path, _only("table1_gap")).iloc[0]
    assert row["verdict"] == expected
    assert "at most 1.40 dB allowed" in row["why"]
    assert "latent frames per clip: cvvae 5, image_vae 17" in row["our measurement"]


def test_flicker_is_compared_by_distance_from_zero(tmp_path: Path) -> None:
    n = len(CLIPS)
    write_clips(
        tmp_path, "video", "image_vae", tde=np.full(n, 0.05), flicker=np.full(n, -0.04) + noise(0, 0.001)
    )
    write_clips(tmp_path, "video", "cvvae", tde=np.full(n, 0.03), flicker=np.full(n, 0.01) + noise(1, 0.001))
    row = claims.claims_table(tmp_path, _only("flicker_vs_image_vae")).iloc[0]
    assert row["verdict"] == claims.REPRODUCED  # |0.01| < |-0.04| although 0.01 > -0.04
    assert "abs(flicker)" in row["our measurement"]


def test_table_has_one_row_per_claim_and_is_written(tmp_path: Path) -> None:
    write_clips(tmp_path, "video", "cvvae", psnr=base_psnr())
    df = claims.write_claims(tmp_path)
    ids = [c.id for c in claims.default_claims()]
    assert len(ids) == len(set(ids)) == len(df)
    assert list(df.columns) == claims.COLUMNS
    assert [c.split(":")[0] for c in df["claim"]] == ids
    assert set(df["verdict"]) == {claims.NOT_AVAILABLE}  # only cvvae exists: nothing to compare with
    assert (tmp_path / "tables" / "claims.csv").is_file()
    assert "Claim-by-claim verdict" in (tmp_path / "tables" / "claims.md").read_text()
    assert (
        pd.read_csv(tmp_path / "tables" / "claims.csv", keep_default_na=False)["verdict"].tolist()
        == df["verdict"].tolist()
    )


def test_report_puts_the_claims_near_the_top_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "p.yaml"
    profile = yaml.safe_load((Path(__file__).parents[1] / "config" / "ci.yaml").read_text())
    cfg.write_text(yaml.safe_dump({**profile, "profile": "p", "description": "d"}))  # a complete profile
    results = tmp_path / "results"
    b = base_psnr()
    write_clips(results, "video", "none", psnr=b, compat_psnr=b)
    write_clips(results, "video", "cvvae", psnr=b, compat_psnr=b + 1.0 + noise(0))
    (results / "tables").mkdir()
    (results / "tables" / "01_x.md").write_text("**x**\n")
    text = report.build_report(cfg, results)
    assert text.index("## Claim-by-claim verdict") < text.index("**x**")
    assert text.count("tables/claims.csv") == 1  # not repeated among the other tables
    compat = next(line for line in text.splitlines() if line.startswith("| compatibility"))
    assert claims.REPRODUCED in compat


def test_clips_are_paired_by_id_not_by_row(tmp_path: Path) -> None:
    b = base_psnr()
    write_clips(tmp_path, "video", "b", psnr=b[:8])
    folder = tmp_path / "eval" / "video" / "a"
    folder.mkdir(parents=True)
    # a's rows in reverse order and two extra clips that b lacks
    pd.DataFrame({"clip_id": CLIPS[::-1], "psnr": (b + 1.0)[::-1]}).to_csv(
        folder / "per_clip.csv", index=False
    )
    diffs = claims.paired_differences(tmp_path, claims.Comparison("a", "b", "psnr"))
    assert list(diffs.index) == CLIPS[:8]
    assert np.allclose(diffs.iloc[:, 0], 1.0)


# ------------------------------------------------------------------ verdicts only on converged runs


def write_val_log(results: Path, run: str, steps: list[int], psnr: list[float]) -> None:
    folder = results / "runs_meta" / run
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": steps, "psnr_video": psnr}).to_csv(folder / "val_metrics.csv", index=False)


@pytest.mark.parametrize(
    ("steps", "psnr", "converged", "reason"),
    [
        ([0, 500, 1000], [20.0, 22.0, 22.1], True, "+0.10 dB over the last 20%"),
        ([250, 500, 1000], [20.0, 22.0, 22.1], False, "no step-0 validation"),
        ([0, 500, 1000], [20.0, 18.0, 19.5], False, "ended below its starting point (20.00 -> 19.50 dB)"),
        ([0, 500, 800, 1000], [20.0, 21.0, 21.5, 22.0], False, "still improving (+0.50 dB"),
    ],
)
def test_a_run_converged_when_it_ends_above_its_start_on_a_plateau(tmp_path, steps, psnr, converged, reason):
    from cvvae import convergence

    write_val_log(tmp_path, "dec", steps, psnr)
    status = convergence.run_status("dec", convergence.run_log(tmp_path, "dec"))
    assert status.converged is converged and reason in status.reason
    assert convergence.run_status("x", None).reason == "no validation log"


def test_a_run_stopped_before_its_planned_steps_has_not_converged(tmp_path: Path) -> None:
    from cvvae import convergence

    write_val_log(tmp_path, "dec", [0, 500, 1000], [20.0, 22.0, 22.1])
    log = convergence.run_log(tmp_path, "dec")
    (log.parent / "config.yaml").write_text("variant: dec\ntrain:\n  steps: 1200\n")
    status = convergence.run_status("dec", log)
    assert not status.converged and "stopped before its 1200 steps" in status.reason
    assert "at step 1000" in status.reason
    (log.parent / "config.yaml").write_text("variant: dec\ntrain:\n  steps: 1000\n")
    assert convergence.run_status("dec", log).converged


def test_reconstruction_claims_get_no_verdict_on_runs_that_did_not_converge(tmp_path: Path) -> None:
    b = base_psnr()
    write_clips(tmp_path, "video", "cvvae", psnr=b + 1.0 + noise(0))
    write_clips(tmp_path, "video", "enc", psnr=b + noise(1))
    write_clips(tmp_path, "video", "inflated", psnr=b - 2.0 + noise(2))
    training = claims.Training(
        runs={"cvvae": "dec", "enc": "enc"}, starts={"cvvae": "inflated", "enc": "inflated"}
    )
    claim = claims.Claim("t6", "dec beats enc", "none", (claims.Comparison("cvvae", "enc", "psnr"),))
    write_val_log(tmp_path, "dec", [0, 500, 1000], [18.0, 22.0, 22.1])
    write_val_log(tmp_path, "enc", [0, 500, 1000], [18.0, 19.0, 21.0])  # still rising
    row = claims.claims_table(tmp_path, [claim], training).iloc[0]
    assert row["verdict"] == claims.NOT_TESTABLE
    assert "enc (enc) has not converged: still improving" in row["why"]
    assert "measured anyway: reproduced" in row["why"]
    assert "dec: converged" in row["runs"] and "enc: not converged" in row["runs"]

    write_val_log(tmp_path, "enc", [0, 500, 1000], [18.0, 21.0, 21.05])
    assert claims.claims_table(tmp_path, [claim], training).iloc[0]["verdict"] == claims.REPRODUCED
    # without the profile's training record nothing is gated, and the table says so
    assert "unknown without the profile" in claims.claims_table(tmp_path, [claim]).iloc[0]["runs"]


def test_a_run_below_its_starting_point_makes_the_claim_not_testable(tmp_path: Path) -> None:
    b = base_psnr()
    write_clips(tmp_path, "video", "cvvae", psnr=b + noise(0))
    write_clips(tmp_path, "video", "none", psnr=b - 1.0 + noise(1))
    write_clips(tmp_path, "video", "inflated", psnr=b + 2.0 + noise(2))  # training lost 2 dB
    for run in ("dec", "none"):
        write_val_log(tmp_path, run, [0, 500, 1000], [18.0, 22.0, 22.1])
    training = claims.Training(
        runs={"cvvae": "dec", "none": "none"}, starts={"cvvae": "inflated", "none": "inflated"}
    )
    reconstruction = claims.Claim(
        "r", "dec beats none", "none", (claims.Comparison("cvvae", "none", "psnr"),)
    )
    compatibility = claims.Claim(
        "c", "dec beats none", "none", (claims.Comparison("cvvae", "none", "psnr"),), needs_converged=False
    )
    rows = claims.claims_table(tmp_path, [reconstruction, compatibility], training)
    assert rows.iloc[0]["verdict"] == claims.NOT_TESTABLE
    why = rows.iloc[0]["why"]
    assert "cvvae has not beaten its starting point: cvvae - inflated, video psnr: -2.00" in why
    assert rows.iloc[1]["verdict"] == claims.REPRODUCED  # judged at any stage of training


def test_the_profile_says_which_model_starts_from_which() -> None:
    profile = yaml.safe_load((Path(__file__).parents[1] / "config" / "gpu.yaml").read_text())
    training = claims.Training.of_profile(profile)
    assert training.runs["cvvae"] == "dec" and training.runs["cvvae_seed1"] == "dec_seed1"
    assert training.starts["cvvae"] == "inflated" and training.starts["svd_vae"] == "image_vae"
    assert "inflated" not in training.starts and "image_vae" not in training.starts
    assert "uniform_sampling" not in training.starts  # the image VAE's run, not a trained video model


def _generative_table(results: Path, rows: dict[str, tuple[float, float, float, float]]) -> None:
    """generative/metrics.csv with decoder -> (fid, delta_fid, lo, hi), image_vae the reference."""
    folder = results / "generative"
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        {"decoder": name, "samples": 2000, "fid": fid, "delta_fid": d, "delta_fid_lo": lo, "delta_fid_hi": hi,
         "reference_decoder": "image_vae", "note": ""}
        for name, (fid, d, lo, hi) in rows.items()
    ]  # fmt: skip
    pd.DataFrame(records).to_csv(folder / "metrics.csv", index=False)


@pytest.mark.parametrize(
    ("dec", "verdict"),
    [
        ((40.5, 0.5, 0.1, 0.9), claims.REPRODUCED),  # within 5 % of 40 (margin 2.0)
        ((45.0, 5.0, 4.0, 6.0), claims.NOT_REPRODUCED),  # the whole interval above the margin
        ((42.0, 2.0, 1.0, 3.0), claims.INCONCLUSIVE),  # the interval contains the margin
        ((float("nan"),) * 4, claims.NOT_AVAILABLE),
    ],
)
def test_generative_claim_is_judged_on_the_paired_fid_interval(tmp_path: Path, dec, verdict) -> None:
    _generative_table(tmp_path, {"image_vae": (40.0, 0.0, 0.0, 0.0), "dec": dec})
    comparison = claims.Comparison("dec", "image_vae", "fid", claims.GENERATIVE, "<")
    result = claims.evaluate_comparison(tmp_path, comparison)
    assert result.verdict == verdict
    if verdict != claims.NOT_AVAILABLE:
        assert "margin +2.00" in result.why and result.clips == 2000
        assert "2000 samples" in claims.measurement_text(result)


def test_generative_claim_without_a_table_is_na_and_names_the_step(tmp_path: Path) -> None:
    comparison = claims.Comparison("dec", "image_vae", "fid", claims.GENERATIVE, "<")
    result = claims.evaluate_comparison(tmp_path, comparison)
    assert result.verdict == claims.NOT_AVAILABLE and "cvvae.ldm score" in result.why
    row = claims.claims_table(tmp_path).set_index("claim").filter(like="generative_compatibility", axis=0)
    assert list(row["verdict"]) == [claims.NOT_AVAILABLE]


def _converged_log(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": [0, 400, 800, 1000], "psnr_video": [20.0, 21.0, 21.4, 21.45]}).to_csv(
        folder / "val_metrics.csv", index=False
    )


def _generative_claim_row(results: Path, recorded: str | None | bool) -> pd.Series:
    """The generative claim with converged dec and image_vae runs whose dec images recorded ``recorded``
    as their run identity (True: the current run's; False: no field at all)."""
    from cvvae.train.run_identity import identity_digest as run_identity_digest

    _generative_table(results, {"image_vae": (40.0, 0.0, 0.0, 0.0), "dec": (40.5, 0.5, 0.1, 0.9)})
    for run in ("dec", "image_vae"):
        _converged_log(results / "runs_meta" / run)
    (results / "runs_meta" / "dec" / "run_identity.json").write_text(json.dumps({"train": {"lr": 4e-5}}))
    record: dict = {"decoder": "dec", "spec": "cvvae_image:{runs}/dec/final"}
    if recorded is True:
        record["decoder_run_identity"] = run_identity_digest(results / "runs_meta" / "dec")
    elif recorded is not False:
        record["decoder_run_identity"] = recorded
    (results / "generative" / "decoded").mkdir(parents=True)
    (results / "generative" / "decoded" / "dec.json").write_text(json.dumps(record))
    training = claims.Training(runs={"image_vae": "image_vae"}, starts={})
    table = claims.claims_table(results, training=training).set_index("claim")
    return table.filter(like="generative_compatibility", axis=0).iloc[0]


def test_generative_claim_gets_a_verdict_when_the_current_run_decoded_the_samples(tmp_path: Path) -> None:
    row = _generative_claim_row(tmp_path, recorded=True)
    assert row["verdict"] == claims.REPRODUCED, row["why"]


@pytest.mark.parametrize(
    ("recorded", "why"),
    [
        ("0" * 64, "decoded by an earlier run of dec"),  # the recipe of `dec` changed since
        (False, "before decoders recorded their run identity"),
        (None, "run identity of dec is unknown"),
    ],
)
def test_generative_claim_is_not_testable_with_images_of_another_run(tmp_path: Path, recorded, why) -> None:
    row = _generative_claim_row(tmp_path, recorded=recorded)
    assert row["verdict"] == claims.NOT_TESTABLE
    assert why in row["why"] and "measured anyway: reproduced" in row["why"]


def write_meta(results: Path, protocol: str, model: str, psi: str | None, legacy: bool = False) -> None:
    """The evaluation record of the psi its latents were compared with (old records: only the text)."""
    record = (
        {"latent_reference": f"image_vae:x (psi={psi})"} if legacy else {"identity": {"compat_mapping": psi}}
    )
    (results / "eval" / protocol / model / "meta.json").write_text(json.dumps(record))


def write_run_config(results: Path, run: str, mapping: str, steps: int | None = None) -> None:
    """The run's resolved config.yaml in runs_meta/: its regulariser's mapping and, if given, its length."""
    folder = results / "runs_meta" / run
    folder.mkdir(parents=True, exist_ok=True)
    train = {"reg": {"mapping": mapping}} | ({"steps": steps} if steps is not None else {})
    (folder / "config.yaml").write_text(yaml.safe_dump({"variant": run, "train": train}))


@pytest.mark.parametrize(
    ("mapping", "psi", "legacy", "testable"),
    [
        ("random", "slice", False, False),  # the inflated alignment, not what `dec` was pulled toward
        ("random", "slice", True, False),  # read from an older evaluation's description
        ("random", "average", False, True),  # the expectation of a random frame of each group
        ("slice", "slice", False, True),
        ("first", "average", False, False),
    ],
)
def test_compatibility_needs_the_psi_its_regulariser_aimed_at(
    tmp_path: Path, mapping: str, psi: str, legacy: bool, testable: bool
) -> None:
    compat = np.full(len(CLIPS), 25.0)
    write_clips(tmp_path, "video", "cvvae", compat_psnr=compat + 1.0 + noise(0))
    write_clips(tmp_path, "video", "none", compat_psnr=compat + noise(1))
    write_meta(tmp_path, "video", "cvvae", psi, legacy)
    write_run_config(tmp_path, "dec", mapping)
    training = claims.Training(runs={"cvvae": "dec", "none": "none"}, starts={})
    claim = next(c for c in claims.default_claims() if c.id == "compatibility")
    row = claims.claims_table(tmp_path, [claim], training).iloc[0]
    if testable:
        assert row["verdict"] == claims.REPRODUCED
    else:
        assert row["verdict"] == claims.NOT_TESTABLE
        assert f"psi={psi}, but dec was regularised toward psi={mapping}" in row["why"]
        assert ("favours models that keep the inflated alignment" in row["why"]) is (psi == "slice")
        assert "measured anyway: reproduced" in row["why"]


def test_an_unrecorded_psi_makes_alignment_not_testable(tmp_path: Path) -> None:
    mse = np.full(len(CLIPS), 0.3)
    write_clips(tmp_path, "video", "cvvae", latent_mse=mse - 0.1 + noise(0, 0.01))
    write_clips(tmp_path, "video", "none", latent_mse=mse + noise(1, 0.01))
    write_run_config(tmp_path, "dec", "random")
    training = claims.Training(runs={"cvvae": "dec", "none": "none"}, starts={})
    claim = next(c for c in claims.default_claims() if c.id == "latent_alignment")
    row = claims.claims_table(tmp_path, [claim], training).iloc[0]
    assert row["verdict"] == claims.NOT_TESTABLE and "psi of its evaluation is not recorded" in row["why"]
    assert (
        claims.claims_table(tmp_path, [claim]).iloc[0]["verdict"] == claims.REPRODUCED
    )  # no profile: no gate


def test_psi_matched_claims_show_the_validation_logs_against_each_runs_own_psi(tmp_path: Path) -> None:
    compat = np.full(len(CLIPS), 25.0)
    write_clips(tmp_path, "video", "cvvae", compat_psnr=compat + noise(0))
    write_clips(tmp_path, "video", "none", compat_psnr=compat + noise(1))
    write_meta(tmp_path, "video", "cvvae", "average")
    for run, final in (("dec", 21.3), ("none", 20.9), ("dec_seed1", 21.2), ("none_seed1", 21.0)):
        write_run_config(tmp_path, run, "random", steps=600)
        pd.DataFrame({"step": [0, 600], "psnr_image_decoder_vs_psi": [20.8, final]}).to_csv(
            tmp_path / "runs_meta" / run / "val_metrics.csv", index=False
        )
    training = claims.Training(runs={"cvvae": "dec", "none": "none"}, starts={})
    claim = next(c for c in claims.default_claims() if c.id == "compatibility")
    measured = claims.claims_table(tmp_path, [claim], training).iloc[0]["our measurement"]
    assert "validation logs, against each run's own psi: cvvae - none" in measured
    assert "+0.4 dB, +0.2 dB (2 seeds, no interval)" in measured
    # a seed run stopped before its planned steps has no final value and is left out
    write_run_config(tmp_path, "dec_seed1", "random", steps=1200)
    measured = claims.claims_table(tmp_path, [claim], training).iloc[0]["our measurement"]
    assert "+0.4 dB (1 seed, no interval)" in measured
