"""``humanego run humanego_training export``: a training checkpoint -> a policy bundle a deployment loads.

The bundle (humanego_policy.bundle) holds the ONNX graph(s), the torch weights (EMA weights by default), the
dataset stats and bundle.json. Before the bundle is moved into place, onnxruntime and torch are run on the
same random observations and noise and must agree within ``--tolerance`` (default 1e-4, max abs difference
of the normalised actions and the done probability); a bundle that fails is not written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from humanego_core.actions import ACTION_DIM, NormStats
from humanego_policy import bundle as bundle_format
from humanego_policy.bundle import BundleError, BundleManifest, OnnxSection
from humanego_policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from humanego_policy.policies import Policy, PolicyConfigError
from humanego_policy.runtime import PolicyRuntime

OPSET = 17  # onnxruntime 1.31 runs opsets up to 23; 17 has LayerNormalization and is widely supported
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The export ran but its result is not usable (parity failed, output folder not ours)."""


@dataclass
class ExportResult:
    path: Path
    layout: str
    files: dict[str, int]  # file -> bytes
    parity_max_abs_diff: float | None


def export_graphs(policy: Policy, layout: str, out_dir: Path, opset: int = OPSET) -> dict[str, str]:
    """Write the ONNX graphs of ``layout`` into ``out_dir``; returns graph name -> file name."""
    files = {}
    for graph in policy.onnx_graphs(layout):
        names = list(graph.inputs) + graph.outputs
        dynamic_axes = {name: {graph.batch_axis(name): "batch"} for name in names}
        file_name = f"{graph.name}.onnx"
        with warnings.catch_warnings():
            # torch 2.9+ announces that the TorchScript exporter is legacy; it is the one that needs no onnxscript.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            # GroupNorm's batch-size sanity check is a Python comparison the tracer warns about; it is not data flow.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.functional")
            torch.onnx.export(graph.module.eval(), tuple(graph.inputs.values()), str(out_dir / file_name),
                              input_names=list(graph.inputs), output_names=graph.outputs,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        files[graph.name] = file_name
    return files


def random_observations(runtime: PolicyRuntime, count: int, seed: int) -> tuple[np.ndarray, ...]:
    """Prepared inputs for comparing backends: images, tokens with valid type ids and some padding, noise."""
    rng = np.random.default_rng(seed)
    layout = runtime.bundle.token_layout
    images = rng.random((count, 3, *runtime.image_size), dtype=np.float32)
    tokens = rng.standard_normal((count, *layout.shape), dtype=np.float32)
    tokens[..., 0] = rng.integers(1, 5, size=(count, layout.max_tokens))
    mask = np.arange(layout.max_tokens)[None] < rng.integers(1, layout.max_tokens + 1, size=(count, 1))
    tokens[~mask] = 0.0
    noise = rng.standard_normal((count, runtime.horizon, ACTION_DIM), dtype=np.float32)
    return images, tokens, mask, noise


def check_parity(bundle_dir: Path, samples: int = 4, seed: int = 0) -> float:
    """Max abs difference of actions and done probability between onnxruntime and torch on the same inputs."""
    onnx_runtime = PolicyRuntime(bundle_dir, backend="onnxruntime")
    torch_runtime = PolicyRuntime(bundle_dir, backend="torch")
    inputs = random_observations(onnx_runtime, samples, seed)
    worst = 0.0
    for i in range(samples):  # batch 1, as deployed
        one = [x[i : i + 1] for x in inputs]
        for a, b in zip(onnx_runtime.run(*one), torch_runtime.run(*one), strict=True):
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def export_bundle(checkpoint: str | Path, out: str | Path, layout: str | None = None, steps: int | None = None,
                  use_ema: bool = True, opset: int = OPSET, policy_id: str | None = None,
                  tolerance: float | None = TOLERANCE, progress: bool = True) -> ExportResult:
    """Export ``checkpoint`` (a file or a run folder) as the bundle ``out``; ``tolerance`` None skips the
    parity check. An existing bundle at ``out`` is replaced; any other existing folder is refused."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / bundle_format.MANIFEST).is_file():
        raise ExportError(f"{out} exists and is not a policy bundle; choose another --out")
    stages = tqdm(total=4, desc="export", unit="stage", disable=not progress, leave=False)
    ckpt = load_checkpoint(checkpoint)
    policy = ckpt.build_policy(use_ema=use_ema)
    if not policy.ONNX_LAYOUTS:
        raise ExportError(f"{ckpt.path}: the {policy.policy_type} policy has no deployment bundle (its outputs are not "
                          "the 10-D action chunk the policy node runs)")
    stats = NormStats.from_dict(ckpt.dataset_stats, f"{ckpt.path}: dataset_stats")
    if steps is not None:
        if not hasattr(policy.config, "num_steps"):
            raise ExportError(f"--steps: the {policy.policy_type} policy has no integration steps")
        policy.config.num_steps = steps
    layout = layout or policy.ONNX_LAYOUTS[0]
    tmp = out.with_name(f".{out.name}.export-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        stages.set_postfix_str("onnx")
        files = export_graphs(policy, layout, tmp, opset)
        stages.update()
        save_checkpoint(tmp / bundle_format.WEIGHTS, policy, ckpt.token_layout, stats.to_dict(), ckpt.dt)
        stats.save(tmp / bundle_format.STATS)
        step = (ckpt.training or {}).get("step")
        manifest = BundleManifest(
            format=bundle_format.FORMAT, version=bundle_format.VERSION, policy_id=policy_id or out.name,
            policy_type=policy.policy_type, token_layout=ckpt.token_layout.to_dict(), horizon=policy.horizon,
            action_dim=policy.action_dim, arm=ckpt.token_layout.hand_side, dt=ckpt.dt,
            image_size=list(policy.image_size), integration_steps=getattr(policy.config, "num_steps", None),
            model_config=policy.config_dict(), onnx=OnnxSection(layout, opset, files),
            source={"checkpoint": str(ckpt.path), "training_step": step,
                    "ema": use_ema and ckpt.ema_state_dict is not None})
        bundle_format.write_manifest(tmp, manifest)
        stages.update()
        stages.set_postfix_str("parity")
        diff = None if tolerance is None else check_parity(tmp)
        stages.update()
        if diff is not None and not diff <= tolerance:
            raise ExportError(f"onnxruntime and torch differ by {diff:.3g} (> {tolerance:g}) on the same inputs; "
                              "the bundle was not written")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
        stages.update()
    finally:
        stages.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(out, layout, {p.name: p.stat().st_size for p in sorted(out.iterdir())}, diff)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanego_training export",
        description="Export a trained policy checkpoint as a bundle for deployment (the policy node, "
                    "humanego_policy.runtime.PolicyRuntime): ONNX graph(s), torch weights, dataset_stats.json and "
                    "bundle.json. onnxruntime and torch are checked to agree on the same inputs and noise before "
                    "the bundle is written.",
        epilog="example: humanego run humanego_training export --checkpoint runs/serve_bread_flow "
               "--out models/serve_bread_flow")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a checkpoint file or a run folder (its latest.pt)")
    parser.add_argument("--out", type=Path, required=True,
                        help="bundle folder to write (an existing bundle is replaced)")
    parser.add_argument("--layout", choices=bundle_format.ONNX_LAYOUTS,
                        help="ONNX layout: encoder_step (flow matching: the context once, the step graph looped by "
                             "the runtime) or single (one graph, integration unrolled); default: the policy's first")
    parser.add_argument("--steps", type=int, help="Euler integration steps (flow matching; default: the training "
                        "config's num_steps)")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights instead of their EMA")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    parser.add_argument("--policy-id", help="name published with each action chunk (default: the --out folder name)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest allowed onnxruntime vs torch difference (default {TOLERANCE:g})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.steps is not None and args.steps < 1:
        print("[ERROR] --steps must be at least 1", file=sys.stderr)
        return 2
    try:
        result = export_bundle(args.checkpoint, args.out, args.layout, args.steps, not args.no_ema, args.opset,
                               args.policy_id, args.tolerance, progress=not args.no_progress)
    except (FileNotFoundError, CheckpointError, BundleError, PolicyConfigError, ValueError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in result.files.items())
    print(f"bundle {result.path} ({result.layout}): {sizes}")
    if result.parity_max_abs_diff is not None:
        print(f"onnxruntime vs torch: max abs difference {result.parity_max_abs_diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
