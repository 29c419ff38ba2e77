"""Per-chunk inference latency of a policy bundle on CPU: onnxruntime (each ONNX layout) vs torch, p50/p99.

One call = ``PolicyRuntime.predict`` on one observation (image resize, the model with its integration steps,
decoding), batch 1, as the policy node runs it. Besides wall-clock percentiles it prints the process CPU time
per call: on a machine busy with other work the wall clock measures the competition, while with
``--threads 1`` the CPU time stays close to the wall-clock latency of an idle machine. Without ``--bundle``, a
flow-matching policy of the given preset (random weights: latency does not depend on them) is exported into a
temporary folder in every layout.

    python benchmarks/policy_latency.py                       # cpu preset, 10 Euler steps, 2 threads
    python benchmarks/policy_latency.py --threads 1           # on a busy machine: read the CPU ms column
    python benchmarks/policy_latency.py --bundle models/serve_bread_flow --runs 500
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from humanego_core.actions import NormStats
from humanego_policy.checkpoint import TokenLayout, save_checkpoint
from humanego_policy.policies import build_policy
from humanego_policy.runtime import PolicyRuntime
from humanego_training.export import export_bundle

CAMERA_SIZE = (240, 320, 3)  # the robot camera's clean view, resized by the runtime


def make_bundles(preset: str, steps: int, workdir: Path) -> dict[str, Path]:
    layout = TokenLayout(20, 8)
    torch.manual_seed(0)
    policy = build_policy("flow", {"preset": preset, "num_steps": steps}, layout.token_dim, layout.max_tokens)
    stats = NormStats(np.zeros(3), np.ones(3))
    checkpoint = save_checkpoint(workdir / "latest.pt", policy, layout, stats.to_dict(), dt=1 / 30)
    return {name: export_bundle(checkpoint, workdir / name, layout=name, progress=False).path
            for name in policy.ONNX_LAYOUTS}


def measure(runtime: PolicyRuntime, runs: int, warmup: int, label: str) -> tuple[np.ndarray, float]:
    """Wall-clock ms per call, and the mean process CPU ms per call."""
    rng = np.random.default_rng(0)
    layout = runtime.bundle.token_layout
    image = rng.integers(0, 256, CAMERA_SIZE, dtype=np.uint8)
    tokens = np.zeros(layout.shape, np.float32)
    tokens[:3, 0] = [2, 3, 4]
    tokens[:3, 1:] = rng.standard_normal((3, layout.token_dim - 1))
    mask = np.arange(layout.max_tokens) < 3
    for _ in range(warmup):
        runtime.predict(image, tokens, mask)
    times = []
    cpu_start = time.process_time()
    for _ in tqdm(range(runs), desc=label, unit="chunk", leave=False):
        start = time.perf_counter()
        runtime.predict(image, tokens, mask)
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3, (time.process_time() - cpu_start) / runs * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a bundle to measure (default: random cpu-preset bundles)")
    parser.add_argument("--preset", default="cpu", help="flow-matching preset without --bundle (default cpu)")
    parser.add_argument("--steps", type=int, default=10, help="Euler steps without --bundle (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of onnxruntime and torch (default 2)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bundles = {args.bundle.name: args.bundle} if args.bundle else make_bundles(args.preset, args.steps, Path(tmp))
        rows = []
        for path in bundles.values():
            ort_runtime = PolicyRuntime(path, backend="onnxruntime", threads=args.threads)
            rows.append((f"onnxruntime {ort_runtime.bundle.manifest.onnx.layout}", ort_runtime))
        rows.append(("torch (eager)", PolicyRuntime(next(iter(bundles.values())), backend="torch",
                                                   threads=args.threads)))
        m = rows[0][1].bundle.manifest
        print(f"policy {m.policy_type}, {m.model_config.get('dim')}-wide, image {m.image_size}, horizon {m.horizon}, "
              f"{m.integration_steps} integration steps; {args.threads} threads, {args.runs} runs; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'backend':32s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s} {'CPU ms':>8s}")
        for label, runtime in rows:
            ms, cpu_ms = measure(runtime, args.runs, args.warmup, label)
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"{label:32s} {p50:8.2f} {p99:8.2f} {ms.mean():8.2f} {cpu_ms:8.2f}", flush=True)


if __name__ == "__main__":
    main()
