"""Time the levers of the CV-VAE fast path on one GPU and print a compact table.

Each lever runs in one process on the released architecture with random weights (seed 0), batch 1, bf16: the
plain path (the modules' own forward), the fast path (:mod:`cvvae.models.fast`) as it is by default and with
one lever changed, and CUDA graphs of the fast path; a profile of the fast encode and decode. Numerics:
relative L2 error against the plain fp32 path. Times are medians of CUDA-event timings after warm-up; peaks
are ``torch.cuda.max_memory_allocated``. The first round of levers (cuDNN autotuner and channels-last input on
the plain path, Triton GroupNorm, ``torch.compile`` of the plain encoder) is recorded in docs/performance.md.

    PYTHONPATH=. python3 scripts/bench_levers.py [--json out.json] [--long]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch

from cvvae.models import CVVAEModel, fast

START = time.perf_counter()
ROWS: list[dict[str, Any]] = []


def timed(fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, Any]:
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times), result


def peak_of(fn: Callable[[], Any]) -> tuple[float, Any]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30, out


@contextlib.contextmanager
def settings(benchmark: bool = False, triton: bool = True, chunk: int | None = None) -> Iterator[None]:
    old = (torch.backends.cudnn.benchmark, fast.cudnn_benchmark, fast.use_triton, fast.chunk_bytes)
    torch.backends.cudnn.benchmark = benchmark
    fast.cudnn_benchmark, fast.use_triton = benchmark, triton
    if chunk is not None:
        fast.chunk_bytes = chunk
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, fast.cudnn_benchmark, fast.use_triton, fast.chunk_bytes = old


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def run_case(
    label: str,
    model: CVVAEModel,
    x: torch.Tensor,
    mode: bool | None,
    warmup: int,
    repeats: int,
    ref: tuple[torch.Tensor, torch.Tensor] | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> None:
    model.set_fast_path(mode)
    shape = "x".join(str(s) for s in x.shape[2:])
    try:
        xin = prepare(x)
        enc_s, z = timed(lambda: model.encode(xin).latent_dist.mode(), warmup, repeats)
        enc_peak, _ = peak_of(lambda: model.encode(xin).latent_dist.mode())
        zin = ref[0].to(x.dtype) if ref is not None else z
        dec_s, out = timed(lambda: model.decode(zin).sample, warmup, repeats)
        dec_peak, _ = peak_of(lambda: model.decode(zin).sample)
        row = {
            "case": label,
            "model": type(model).__name__,
            "shape": shape,
            "encode_s": round(enc_s, 5),
            "decode_s": round(dec_s, 5),
            "fps": round(x.shape[2] / (enc_s + dec_s), 1),
            "enc_gib": round(enc_peak, 2),
            "dec_gib": round(dec_peak, 2),
            "finite": bool(torch.isfinite(out).all()),
        }
        if ref is not None:
            row["err_z"], row["err_x"] = round(rel(z, ref[0]), 5), round(rel(out, ref[1]), 5)
    except Exception as error:  # a failing lever is a result; the others still run
        traceback.print_exc()
        row = {"case": label, "shape": shape, "error": f"{type(error).__name__}: {error}"[:200]}
    finally:
        model.set_fast_path(None)
    ROWS.append(row)
    print(json.dumps(row), flush=True)


def graph_case(label: str, model: CVVAEModel, x: torch.Tensor, repeats: int) -> None:
    """Encode and decode captured as two CUDA graphs (fixed shapes), replayed."""
    model.set_fast_path(True)
    try:
        static_x = x.clone()
        z0 = model.encode(static_x).latent_dist.mode()
        static_z = z0.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                model.encode(static_x).latent_dist.mode()
                _ = model.decode(static_z).sample
        torch.cuda.current_stream().wait_stream(stream)
        g_enc, g_dec = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(g_enc):
            z_out = model.encode(static_x).latent_dist.mode()
        with torch.cuda.graph(g_dec):
            x_out = model.decode(static_z).sample
        enc_s, _ = timed(g_enc.replay, 2, repeats)
        dec_s, _ = timed(g_dec.replay, 2, repeats)
        eager_z = model.encode(static_x).latent_dist.mode()
        row = {
            "case": label,
            "model": type(model).__name__,
            "shape": "x".join(str(s) for s in x.shape[2:]),
            "encode_s": round(enc_s, 5),
            "decode_s": round(dec_s, 5),
            "fps": round(x.shape[2] / (enc_s + dec_s), 1),
            "graph_vs_eager_z": round(rel(z_out, eager_z), 6),
            "finite": bool(torch.isfinite(x_out).all()),
        }
    except Exception as error:
        traceback.print_exc()
        row = {"case": label, "error": f"{type(error).__name__}: {error}"[:200]}
    finally:
        model.set_fast_path(None)
    ROWS.append(row)
    print(json.dumps(row), flush=True)


def profile(model: CVVAEModel, x: torch.Tensor, z: torch.Tensor) -> None:
    """Top kernels of one fast encode and one fast decode, by CUDA time."""
    from torch.profiler import ProfilerActivity, profile

    for name, fn in (("encode", lambda: model.encode(x)), ("decode", lambda: model.decode(z))):
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        print(name)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default=None)
    parser.add_argument("--long", action="store_true", help="also 97x576x1024 (fast path only)")
    args = parser.parse_args()
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    gen = torch.Generator().manual_seed(0)

    def clip(t: int, h: int, w: int) -> torch.Tensor:
        return (torch.rand(1, 3, t, h, w, generator=gen) * 2 - 1).to(dev)

    torch.manual_seed(0)
    ref_model = CVVAEModel.from_released_config().to(dev).eval().requires_grad_(False)
    model = CVVAEModel.from_released_config().to(dev).eval().requires_grad_(False)
    model.load_state_dict(ref_model.state_dict())
    model = torch.nn.Module.to(model, dtype=torch.bfloat16)
    small = clip(17, 256, 256)
    with torch.no_grad():
        ref_model.set_fast_path(False)
        z_ref = ref_model.encode(small).latent_dist.mode()
        x_ref = ref_model.decode(z_ref).sample
        ref = (z_ref, x_ref)
        xb = small.bfloat16()
        run_case("fast fp32 vs plain fp32", ref_model, small, True, 1, 3, ref)
        del ref_model
        torch.cuda.empty_cache()
        with settings(benchmark=False):
            run_case("plain (as before)", model, xb, False, 2, 5, ref)
        with settings(benchmark=True):
            run_case("fast (default)", model, xb, True, 2, 5, ref)
            fast.subpixel_upsample = False
            run_case("fast, nearest 2x + 3x3 conv upsample", model, xb, True, 2, 5, ref)
            fast.subpixel_upsample = True
            graph_case("fast + CUDA graphs", model, xb, 10)
            profile(model, xb, z_ref.bfloat16())
            if args.long:
                mid = clip(17, 576, 1024).bfloat16()
                run_case("fast (default)", model, mid, True, 1, 3)
                with settings(benchmark=False, chunk=256 * 2**20):
                    run_case("fast, no autotune", model, mid, True, 1, 3)
    print(f"\nlevers, {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, batch 1")
    keys = ["case", "model", "shape", "encode_s", "decode_s", "fps", "enc_gib", "dec_gib", "err_z", "err_x"]
    print(" | ".join(keys))
    for row in ROWS:
        print(" | ".join(str(row.get(k, row.get("error", ""))) for k in keys))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(ROWS, handle, indent=1)
    print(f"total {time.perf_counter() - START:.0f} s")


if __name__ == "__main__":
    main()
