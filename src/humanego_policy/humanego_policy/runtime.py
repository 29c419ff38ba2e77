"""Running an exported policy bundle on one observation: onnxruntime (CUDA when available, else CPU) or torch.

::

    runtime = PolicyRuntime("models/serve_bread_flow")            # backend "auto": onnxruntime, else torch
    out = runtime.predict(image_rgb, tokens, token_mask)           # uint8 (h0, w0, 3), (T, D), (T,)
    out.T_ref, out.grasp, out.done_prob                             # (H, 4, 4) in the tokens' reference frame

The image is converted exactly as for training (:func:`humanego_policy.policies.prepare_image`); the actions
are decoded with the bundle's dataset stats (:func:`humanego_core.actions.decode_actions`). Noise comes from
the runtime's generator (``seed``) unless given, so the two backends can be compared on the same noise.

The ``encoder_step`` layout runs the encoder graph once and the step graph ``integration_steps`` times in
:func:`humanego_policy.integration.euler_integrate`, the loop torch runs too, and adds the encoder's
``origin`` (the pose a relative chunk starts from). torch is imported only by the
torch backend: an onnxruntime deployment does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanego_core.actions import ACTION_DIM, decode_actions
from humanego_policy.bundle import Bundle, BundleError, TokenLayout
from humanego_policy.inputs import prepare_image
from humanego_policy.integration import euler_integrate

BACKENDS = ("auto", "onnxruntime", "torch")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass
class PolicyOutput:
    actions: np.ndarray  # (H, 10) normalised
    T_ref: np.ndarray  # (H, 4, 4) poses in the reference frame of the tokens
    grasp: np.ndarray  # (H,) in [0, 1]
    done_prob: float


class PolicyRuntime:
    """A loaded bundle ready to predict. ``expected_layout``: refuse a bundle made for other tokens;
    ``threads``: CPU threads of onnxruntime / torch (0 = their default)."""

    def __init__(self, bundle_dir: str | Path, backend: str = "auto", expected_layout: TokenLayout | None = None,
                 threads: int = 0, seed: int | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.bundle = Bundle.load(bundle_dir)
        self.bundle.check_compatible(expected_layout, ACTION_DIM)
        m = self.bundle.manifest
        self.horizon, self.image_size = m.horizon, (m.image_size[0], m.image_size[1])
        self.rng = np.random.default_rng(seed)
        if backend == "auto":
            backend = "onnxruntime" if m.onnx is not None and _onnxruntime() is not None else "torch"
        self.backend = backend
        self.providers: list[str] = []
        if backend == "onnxruntime":
            self._init_onnxruntime(threads)
        else:
            self._init_torch(threads)

    # --- backends ---
    def _init_onnxruntime(self, threads: int) -> None:
        ort = _onnxruntime()
        if ort is None:
            raise BundleError("backend onnxruntime requested but onnxruntime is not installed")
        if self.bundle.manifest.onnx is None:
            raise BundleError(f"{self.bundle.path} has no ONNX graphs (torch-only bundle); use backend torch")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]
        self.sessions = {name: ort.InferenceSession(str(path), options, providers=providers)
                         for name, path in self.bundle.onnx_files.items()}
        self.providers = next(iter(self.sessions.values())).get_providers()
        self._check_graph_shapes()

    def _check_graph_shapes(self) -> None:
        """The graphs' fixed input dimensions must be those bundle.json promises (a graph copied from another
        bundle would otherwise fail at the first observation, or worse, run)."""
        m, layout = self.bundle.manifest, self.bundle.token_layout
        expected = {"image": (3, *self.image_size), "tokens": layout.shape, "token_mask": (layout.max_tokens,),
                    "noise": (m.horizon, m.action_dim), "x": (m.horizon, m.action_dim)}
        if "encoder" in self.sessions:
            outputs = [arg.name for arg in self.sessions["encoder"].get_outputs()]
            if "origin" not in outputs:
                raise BundleError(f"{self.bundle.onnx_files['encoder']} has outputs {outputs}, not the chunk's "
                                  "origin: it was exported by an older version; export the checkpoint again")
        for graph, session in self.sessions.items():
            for arg in session.get_inputs():
                if arg.name in expected and tuple(arg.shape[1:]) != expected[arg.name]:
                    raise BundleError(f"{self.bundle.onnx_files[graph]} takes {arg.name} {tuple(arg.shape[1:])}, "
                                      f"but {self.bundle.path / 'bundle.json'} says {expected[arg.name]}")

    def _init_torch(self, threads: int) -> None:
        import torch

        from humanego_policy.checkpoint import CheckpointError, load_checkpoint

        self.torch = torch
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            checkpoint = load_checkpoint(self.bundle.weights_path)
            if checkpoint.token_layout != self.bundle.token_layout:
                raise BundleError(f"{self.bundle.weights_path} is for {checkpoint.token_layout.describe()}, "
                                  f"bundle.json says {self.bundle.token_layout.describe()}")
            self.policy = checkpoint.build_policy(use_ema=False)
        except CheckpointError as exc:
            raise BundleError(str(exc)) from None
        if (self.policy.horizon, self.policy.action_dim) != self.bundle.action_shape:
            raise BundleError(f"{self.bundle.weights_path} outputs actions ({self.policy.horizon}, "
                              f"{self.policy.action_dim}), bundle.json says {self.bundle.action_shape}")

    # --- inference ---
    def sample_noise(self, batch_size: int = 1) -> np.ndarray:
        return self.rng.standard_normal((batch_size, self.horizon, ACTION_DIM), dtype=np.float32)

    def run(self, image: np.ndarray, tokens: np.ndarray, token_mask: np.ndarray,
            noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batched model call on prepared inputs: image (B, 3, h, w) float32 in [0, 1], tokens (B, T, D), mask
        (B, T), noise (B, H, 10) -> (actions (B, H, 10), done_prob (B,))."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        tokens = np.ascontiguousarray(tokens, dtype=np.float32)
        token_mask = np.ascontiguousarray(token_mask, dtype=bool)
        noise = np.ascontiguousarray(noise, dtype=np.float32)
        if self.backend == "torch":
            with self.torch.inference_mode():
                actions, done = self.policy.infer(*map(self.torch.from_numpy, (image, tokens, token_mask, noise)))
            return actions.numpy(), done.numpy()
        if self.bundle.manifest.onnx.layout == "single":
            return tuple(self._run("policy", image=image, tokens=tokens, token_mask=token_mask, noise=noise))
        context_kv, bias, done, origin = self._run("encoder", image=image, tokens=tokens, token_mask=token_mask)
        batch = np.ones(image.shape[0], dtype=np.float32)

        def velocity(x, t):
            return self._run("step", x=x, t=batch * np.float32(t), context_kv=context_kv, bias=bias)[0]

        return euler_integrate(velocity, noise, self.bundle.manifest.integration_steps) + origin, done

    def _run(self, graph: str, **inputs) -> list[np.ndarray]:
        session = self.sessions[graph]
        return session.run(None, {arg.name: inputs[arg.name] for arg in session.get_inputs()})

    def predict(self, image_rgb: np.ndarray, tokens: np.ndarray, token_mask: np.ndarray,
                noise: np.ndarray | None = None) -> PolicyOutput:
        """One observation: RGB uint8 (h0, w0, 3), tokens (T, D), mask (T,) -> the decoded chunk. Inputs of the
        wrong shape or with NaN/inf raise ValueError; so does a non-finite model output."""
        layout = self.bundle.token_layout
        tokens = np.asarray(tokens, dtype=np.float32)
        token_mask = np.asarray(token_mask, dtype=bool)
        if tokens.shape != layout.shape or token_mask.shape != (layout.max_tokens,):
            raise ValueError(f"tokens {tokens.shape} and mask {token_mask.shape} given, the policy takes "
                             f"{layout.shape} and ({layout.max_tokens},)")
        if not np.all(np.isfinite(tokens)):
            raise ValueError("tokens contain NaN or inf")
        if noise is None:
            noise = self.sample_noise()
        noise = np.asarray(noise, dtype=np.float32).reshape(1, self.horizon, ACTION_DIM)
        image = prepare_image(image_rgb, self.image_size)[None]
        actions, done = self.run(image, tokens[None], token_mask[None], noise)
        if not (np.all(np.isfinite(actions)) and np.all(np.isfinite(done))):
            raise ValueError("the policy output contains NaN or inf")
        T_ref, grasp = decode_actions(actions[0], self.bundle.stats)
        return PolicyOutput(actions[0], T_ref, grasp, float(done[0]))


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime
