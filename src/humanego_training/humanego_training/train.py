"""``humanego_training train --config config/training/<task>_<policy>.yaml``: train a policy on preprocessed
recordings.

The YAML (schema :class:`TrainingConfig`; ``--describe-config`` lists every key) has four sections: ``task``,
``policy`` (type and the policy's own settings, validated by its schema), ``data``
(:class:`humanego_training.dataset.DataConfig`: recordings, held-out split, observation image, token layout,
augmentation) and ``train`` (optimisation and bookkeeping). An unknown key anywhere is an error naming it and
the file. ``policy.type: egomimic`` trains on EgoMimic HDF5 files instead, with their own ``data`` section
(:mod:`humanego_training.egomimic_train`, through the data hooks of :class:`Trainer`).

What a run writes into ``train.out_dir``:

- ``config.json`` (the resolved configuration, the recordings of each split), ``dataset_stats.json``
  (position statistics of the training recordings only);
- ``latest.pt`` after every epoch (:mod:`humanego_policy.checkpoint`: weights, EMA weights, statistics, token
  layout and the trainer's state). Rerunning the same command resumes from it (after a kill, or with more
  epochs); ``--restart`` starts over;
- ``train_curve.png`` (loss and learning rate per step), ``eval_curve.png`` (held-out metrics per evaluation),
  ``eval_snapshots/eval_ep_XXXX.json`` (DESIGN.md section 6 metrics of the EMA weights on the held-out
  recordings) and ``eval_renders/eval_ep_XXXX_<recording>.mp4`` (true vs predicted future paths).

Optimisation: AdamW (no weight decay on biases, norms and embeddings), linear warm-up then cosine decay,
gradient clipping, an exponential moving average of the weights (evaluated and exported). Seeds fix the
initialisation, the sampling order and the augmentation. A batch holding NaN/inf is skipped and counted; a
NaN/inf loss stops training with an error (``TrainingDivergedError``) instead of diverging silently.

Multi-GPU: started by ``torchrun --nproc_per_node N .../train --config ...`` (``WORLD_SIZE`` > 1) the same code
runs DistributedDataParallel with a DistributedSampler (NCCL on CUDA, gloo on CPU); rank 0 evaluates and
writes. ``train.device: auto`` takes CUDA when there is one.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)

from humanego_core import training_data
from humanego_core.actions import NormStats
from humanego_core.config import ConfigError, describe_schema, load_config, load_yaml, option, to_dict
from humanego_policy.checkpoint import LATEST, TokenLayout, load_checkpoint, save_checkpoint
from humanego_policy.policies import Policy, build_policy, nonfinite_keys
from humanego_training.dataset import (
    DataConfig,
    PolicyDataset,
    augment_batch,
    compute_dataset_stats,
    expand_recordings,
    load_recording,
    split_recordings,
)
from humanego_training.evaluate import evaluate_split, format_metrics, pick_device
from humanego_training.stage_cache import write_json_atomic

MODEL_KEYS = ("image", "tokens", "token_mask", "actions", "action_valid", "done")
CURVE_METRICS = (("pos_err_w_m", 100.0, "pos_err_w (cm)"), ("rot_err_w_deg", 1.0, "rot_err_w (deg)"),
                 ("grasp_f1_w", 1.0, "grasp_f1_w"), ("done_acc", 1.0, "done_acc"))


@dataclass
class PolicySection:
    type: str = option("flow", help="policy type: flow (flow matching), act, egomimic")
    config: dict[str, Any] = option(default_factory=dict, help="the policy's settings (its schema; `preset: cpu` or "
                                                               "`gpu` picks a named size the other keys override)")


@dataclass
class TrainSettings:
    out_dir: str = option(help="run folder (relative to the working directory)")
    seed: int = option(0, help="seed of initialisation, sample order, augmentation and evaluation noise")
    epochs: int = option(100, help="passes over the training samples", minimum=1)
    batch_size: int = option(64, help="samples per step (per process with torchrun)", minimum=1)
    lr: float = option(3e-4, help="peak learning rate of AdamW", minimum=0.0)
    weight_decay: float = option(0.05, help="AdamW weight decay (not on biases, norms, embeddings)", minimum=0.0)
    warmup_steps: int = option(200, help="linear learning-rate warm-up steps", minimum=0)
    min_lr_ratio: float = option(0.05, help="the cosine decays to lr * this at the last step", minimum=0.0,
                                 maximum=1.0)
    grad_clip: float = option(1.0, help="gradient norm clip (0: none)", minimum=0.0)
    ema_decay: float = option(0.999, help="EMA of the weights (0: none; the raw weights are evaluated)",
                              minimum=0.0, maximum=1.0)
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="auto: cuda when available, else cpu")
    threads: int | None = option(None, help="torch CPU threads (null: torch's default)", minimum=1)
    num_workers: int = option(0, help="DataLoader worker processes (samples are cached arrays: 0 is fine)",
                              minimum=0)
    eval_every: int = option(5, help="evaluate on the held-out recordings every this many epochs (and at the end)",
                             minimum=1)
    eval_max_samples: int | None = option(None, help="evenly spaced held-out samples per intermediate evaluation "
                                                     "(null: all; the final evaluation uses all)", minimum=1)
    eval_batch_size: int = option(128, help="samples per evaluation batch", minimum=1)
    metrics_k: int | None = option(None, help="step K of the *_kK metrics (null: the horizon)", minimum=1)
    renders: int = option(2, help="eval videos per evaluation (held-out recordings; 0: none)", minimum=0)
    render_final_only: bool = option(True, help="videos at the final evaluation only")
    find_unused_parameters: bool = option(False, help="DDP: parameters without gradient in some steps")


@dataclass
class TrainingConfig:
    task: str = option(help="task name, recorded in the run (e.g. serve_bread)")
    data: DataConfig = option(help="training data")
    train: TrainSettings = option(help="optimisation and bookkeeping")
    policy: PolicySection = option(default_factory=PolicySection, help="policy type and settings")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or inf."""


def trainer_class(path: str | Path) -> type[Trainer]:
    """The trainer of a training YAML: EgoMimic's (HDF5 data, humanego_training.egomimic_train) for policy type
    egomimic, otherwise :class:`Trainer` (preprocessed recordings)."""
    raw = load_yaml(path)
    policy = raw.get("policy") if isinstance(raw, dict) else None
    if isinstance(policy, dict) and policy.get("type") == "egomimic":
        from humanego_training.egomimic_train import EgoMimicTrainer

        return EgoMimicTrainer
    return Trainer


def load_training_config(path: str | Path) -> TrainingConfig:
    return load_config(path, trainer_class(path).config_schema)


# ----- distributed ---------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_setting: str) -> tuple[Dist, torch.device]:
    """torchrun's environment (WORLD_SIZE > 1) -> a process group; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), pick_device(device_setting)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_setting)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank), device


class _LossModule(nn.Module):
    """``forward`` = the policy's loss, so that DistributedDataParallel synchronises its gradients."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy

    def forward(self, batch):
        return self.policy.loss(batch)


# ----- optimisation --------------------------------------------------------------------------------------------
def make_optimizer(policy: Policy, settings: TrainSettings) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in policy.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or "embedding" in name or name.endswith(("position", "slots", "cls"))
        (no_decay if plain else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's parameters and buffers; the decay ramps up over the first steps
    ((1 + n) / (10 + n)) so early averages do not hold on to the random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.updates = 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_v, v in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_v.dtype.is_floating_point:
                ema_v.lerp_(v.detach(), 1.0 - d)
            else:
                ema_v.copy_(v)


# ----- the run ------------------------------------------------------------------------------------------------
@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    skipped_batches: int = 0
    seconds: float = 0.0  # wall time of the epochs so far, evaluations included, over every resumed session


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolved_config(config: TrainingConfig, policy: Policy, train: list[Path], held_out: list[Path]) -> dict:
    out = to_dict(config)
    out["policy"]["resolved"] = policy.config_dict()
    out["split"] = {"train": [str(p) for p in train], "held_out": [str(p) for p in held_out]}
    return out


def _comparable(config: dict) -> dict:
    """The parts of config.json that must match to resume (more epochs or another eval cadence are fine)."""
    out = json.loads(json.dumps(config))
    for key in ("epochs", "eval_every", "eval_max_samples", "renders", "render_final_only", "threads", "num_workers",
                "eval_batch_size"):
        out["train"].pop(key, None)
    return out


class Trainer:
    config_schema: type = TrainingConfig

    def __init__(self, config: TrainingConfig, source: str, out_dir: Path, restart: bool = False,
                 progress: bool = True):
        self.config, self.source, self.out = config, source, out_dir
        self.settings = config.train
        self.progress = progress
        self.dist, self.device = init_distributed(self.settings.device)
        if self.settings.threads and self.device.type == "cpu":
            torch.set_num_threads(self.settings.threads)
        seed_everything(self.settings.seed)
        self.build_policy(source)
        self.policy.to(self.device)
        if self.dist.world > 1:
            torch.manual_seed(self.settings.seed + 7919 * self.dist.rank)  # other noise and dropout per process
        self.resume = None
        latest = out_dir / LATEST
        if latest.is_file() and not restart:
            self.resume = load_checkpoint(latest)
            saved = json.loads((out_dir / "config.json").read_text())
            if _comparable(saved) != _comparable(self.resolved):
                raise ConfigError(source, "", f"{out_dir} holds a run with another configuration (its config.json); "
                                              "pass --restart to start over or choose another train.out_dir / --out")
        self.load_data(progress and self.dist.main)
        rejected = self.train_set.rejected + (self.eval_set.rejected if self.eval_set else Counter())
        self.log(f"{len(self.train_set)} training samples, {len(self.eval_set) if self.eval_set else 0} held-out"
                 + (f"; rejected frames: {dict(rejected)}" if rejected else ""))
        self.loader, self.sampler = self._loader()
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.steps_per_epoch * self.settings.epochs
        self.optimizer = make_optimizer(self.policy, self.settings)
        self.scheduler = self._scheduler()
        self.ema = EMA(self.policy, self.settings.ema_decay) if self.settings.ema_decay > 0 else None
        self.model = _LossModule(self.policy)
        if self.dist.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.settings.find_unused_parameters)
        self.generator = torch.Generator().manual_seed(self.settings.seed * 1000 + self.dist.rank)
        self.history = History()
        self.step = self.epoch = 0
        if self.resume is not None:
            self._restore()

    # --- data hooks: the preprocessed recordings of DataConfig; humanego_training.egomimic_train overrides them
    # for the EgoMimic HDF5 data ---
    model_keys = MODEL_KEYS          # the batch entries the policy's loss reads
    curve_metrics = CURVE_METRICS    # (metric, scale, label) of eval_curve.png

    def build_policy(self, source: str) -> None:
        """Set ``policy``, ``layout`` (its token layout) and ``resolved`` (config.json: settings and split)."""
        data, config = self.config.data, self.config
        ict = data.ict.ict_config()
        self.layout = TokenLayout.from_ict(ict)
        self.policy = build_policy(config.policy.type, config.policy.config, ict.token_dim, ict.max_tokens,
                                   source=f"{source}: policy.config")
        recordings = expand_recordings(data.recordings)
        self.train_recordings, self.held_out = split_recordings(recordings, data.held_out, data.held_out_fraction,
                                                                data.split_seed)
        self.resolved = resolved_config(config, self.policy, self.train_recordings, self.held_out)

    def load_data(self, progress: bool) -> None:
        """Set ``stats`` (from the checkpoint when resuming), ``train_set`` and ``eval_set`` (None: no held-out)."""
        data = self.config.data
        self.log(f"{len(self.train_recordings)} training and {len(self.held_out)} held-out recordings")
        train_frames = [load_recording(r, data) for r in self.train_recordings]
        held_frames = [load_recording(r, data) for r in self.held_out]
        if self.resume is not None:
            self.stats = NormStats.from_dict(self.resume.dataset_stats, f"{self.resume.path}: dataset_stats")
        else:
            self.stats = compute_dataset_stats(train_frames)
        self.train_set = PolicyDataset(train_frames, data, self.stats, self.policy.horizon, self.policy.image_size,
                                       progress=progress)
        self.eval_set = PolicyDataset(held_frames, data, self.stats, self.policy.horizon, self.policy.image_size,
                                      progress=progress) if held_frames else None

    @property
    def dt(self) -> float:
        """Seconds between action steps."""
        return 1.0 / self.config.data.action_rate_hz

    def augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.config.data.augment.enabled:
            batch["image"], batch["K"] = augment_batch(batch["image"], batch["K"], self.config.data.augment,
                                                       self.generator)
        return batch

    format_metrics = staticmethod(format_metrics)

    def log(self, message: str) -> None:
        if self.dist.main:
            tqdm.write(f"[train] {message}")

    def _loader(self):
        sampler = None
        if self.dist.world > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(
                self.train_set, self.dist.world, self.dist.rank, shuffle=True, seed=self.settings.seed, drop_last=True)
        self.order_generator = torch.Generator()
        drop_last = len(self.train_set) >= self.settings.batch_size * self.dist.world
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=self.settings.batch_size, shuffle=sampler is None, sampler=sampler,
            drop_last=drop_last, num_workers=self.settings.num_workers, generator=self.order_generator,
            pin_memory=self.device.type == "cuda", persistent_workers=self.settings.num_workers > 0)
        return loader, sampler

    def _scheduler(self, last_step: int = -1) -> torch.optim.lr_scheduler.LambdaLR:
        s = self.settings
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, self.total_steps, s.warmup_steps, s.min_lr_ratio), last_step)

    def _restore(self) -> None:
        ckpt = self.resume
        self.policy.load_state_dict(ckpt.state_dict)
        if self.ema is not None and ckpt.ema_state_dict is not None:
            self.ema.model.load_state_dict(ckpt.ema_state_dict)
        state = ckpt.training or {}
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        if self.ema is not None:
            self.ema.updates = int(state.get("ema_updates", self.step))
        self.scheduler = self._scheduler(self.step - 1)  # the schedule of this run's epochs, at the saved step
        self.generator.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.history = History(**state["history"])
        self.log(f"resumed from {ckpt.path} at epoch {self.epoch}, step {self.step}")

    def save(self) -> None:
        if not self.dist.main:
            return
        training = {"step": self.step, "epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                    "ema_updates": self.ema.updates if self.ema else 0, "augment_rng": self.generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "history": dataclasses.asdict(self.history)}
        save_checkpoint(self.out / LATEST, self.policy, self.layout, self.stats.to_dict(), dt=self.dt,
                        ema_state_dict=self.ema.model.state_dict() if self.ema else None, training=training)

    def write_setup(self) -> None:
        if not self.dist.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / "config.json", self.resolved)
        self.stats.save(self.out / "dataset_stats.json")

    def run(self) -> dict | None:
        """Train the remaining epochs; returns the final evaluation (rank 0, when there are held-out recordings)."""
        self.write_setup()
        started = epoch_start = time.perf_counter()
        samples = 0
        final = None
        bar = tqdm(total=self.settings.epochs, initial=self.epoch, desc="epochs", unit="epoch",
                   disable=not (self.progress and self.dist.main))
        while self.epoch < self.settings.epochs:
            # The sample order of an epoch depends on (seed, epoch) only, so a resumed run repeats it exactly.
            self.order_generator.manual_seed(self.settings.seed * 100_003 + self.epoch)
            if self.sampler is not None:
                self.sampler.set_epoch(self.epoch)
            losses = []
            for batch in self.loader:
                loss = self.train_step(batch)
                if loss is not None:
                    losses.append(loss)
                    samples += batch["image"].shape[0] * self.dist.world
            self.epoch += 1
            bar.update()
            if losses:
                bar.set_postfix(loss=f"{np.mean(losses):.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            last = self.epoch == self.settings.epochs
            if self.eval_set is not None and (self.epoch % self.settings.eval_every == 0 or last):
                final = self.evaluate(last)
            now = time.perf_counter()
            self.history.seconds += now - epoch_start
            epoch_start = now
            self.save()
            if self.dist.main:
                self.plot()
        bar.close()
        elapsed = time.perf_counter() - started
        if samples:
            self.log(f"{samples} samples in {elapsed:.0f} s ({samples / elapsed:.1f} samples/s, evaluations "
                     f"included); {self.history.seconds / 60:.1f} min in all epochs of this run")
        if self.dist.world > 1:
            dist.barrier()
        return final

    def train_step(self, batch: dict[str, torch.Tensor]) -> float | None:
        bad = nonfinite_keys({k: batch[k] for k in self.model_keys})
        if bad:
            self.history.skipped_batches += 1
            self.log(f"skipped a batch with NaN/inf in {', '.join(bad)} ({self.history.skipped_batches} so far)")
            return None
        batch = self.augment({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
        self.policy.train()
        loss, logs = self.model({k: batch[k] for k in self.model_keys})
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"loss is {float(loss.detach())} at epoch {self.epoch + 1}, step {self.step} ({logs}); training "
                f"stopped. Lower train.lr (now {self.settings.lr}) or train.grad_clip, check the data; the last good "
                f"weights are in {self.out / LATEST}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.policy)
        self.step += 1
        value = float(loss.detach())
        self.history.steps.append(self.step)
        self.history.loss.append(value)
        self.history.lr.append(float(self.scheduler.get_last_lr()[0]))
        return value

    def eval_policy(self) -> Policy:
        return self.ema.model if self.ema is not None else self.policy

    def evaluate(self, final: bool) -> dict | None:
        if not self.dist.main:
            return None
        s = self.settings
        name = f"eval_ep_{self.epoch:04d}"
        render = s.renders if (final or not s.render_final_only) else 0
        result = evaluate_split(self.eval_policy(), self.eval_set, self.stats,
                                self.out / "eval_snapshots" / f"{name}.json", self.out / "eval_renders", render,
                                s.eval_batch_size, self.device, s.seed, None if final else s.eval_max_samples,
                                s.metrics_k, {"epoch": self.epoch, "step": self.step, "weights": "ema" if self.ema
                                              else "raw"}, progress=False)
        self.history.evals.append({"epoch": self.epoch, "step": self.step, **result["metrics"]})
        self.log(f"epoch {self.epoch}: {self.format_metrics(result['metrics'])}")
        return result

    def plot(self) -> None:
        h = self.history
        if h.steps:
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot(h.steps, h.loss, lw=0.5, alpha=0.4, label="loss per step")
            window = max(1, min(len(h.loss) // 20, self.steps_per_epoch))
            smooth = np.convolve(h.loss, np.ones(window) / window, mode="valid")
            ax.plot(h.steps[window - 1:], smooth, lw=1.5, label=f"mean of {window} steps")
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel("training loss")
            lr_ax = ax.twinx()
            lr_ax.plot(h.steps, h.lr, color="grey", lw=1, ls="--")
            lr_ax.set_ylabel("learning rate (dashed)")
            ax.legend(loc="upper right")
            ax.set_title(f"{self.config.task} {self.config.policy.type}: training loss")
            fig.tight_layout()
            fig.savefig(self.out / "train_curve.png", dpi=100)
            plt.close(fig)
        if h.evals:
            fig, axes = plt.subplots(1, len(self.curve_metrics), figsize=(14, 3.5), squeeze=False)
            epochs = [e["epoch"] for e in h.evals]
            for ax, (key, scale, label) in zip(axes[0], self.curve_metrics, strict=True):
                ax.plot(epochs, [e[key] * scale for e in h.evals], marker="o")
                ax.set_xlabel("epoch")
                ax.set_title(label)
                ax.grid(alpha=0.3)
            fig.suptitle(f"{self.config.task} {self.config.policy.type}: held-out recordings (EMA weights)")
            fig.tight_layout()
            fig.savefig(self.out / "eval_curve.png", dpi=100)
            plt.close(fig)


# ----- CLI -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanego_training train",
        description="Train a policy (flow matching, ACT, ...) on preprocessed recordings. Writes config.json, "
                    "dataset_stats.json, latest.pt (every epoch; rerunning resumes), train_curve.png, "
                    "eval_curve.png, eval_snapshots/eval_ep_XXXX.json (DESIGN.md section 6 metrics on held-out "
                    "recordings) and eval videos into the run folder. Multi-GPU: start it with torchrun.",
        epilog="example: humanego run humanego_training train --config config/training/serve_bread_flow.yaml")
    parser.add_argument("--config", type=Path, help="training YAML (config/training/*.yaml)")
    parser.add_argument("--out", type=Path, help="run folder (overrides train.out_dir)")
    parser.add_argument("--epochs", type=int, help="overrides train.epochs")
    parser.add_argument("--restart", action="store_true", help="discard the run folder's latest.pt and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--describe-config", action="store_true",
                        help="print every configuration key with its type, default and meaning, and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.describe_config:
        print("\n".join(describe_schema(TrainingConfig)))
        return 0
    if args.config is None:
        build_parser().error("--config is required")
    try:
        config = load_training_config(args.config)
        if args.epochs is not None:
            if args.epochs < 1:
                raise ConfigError("--epochs", "", f"must be >= 1, got {args.epochs}")
            config.train.epochs = args.epochs
        out = args.out or Path(config.train.out_dir)
        trainer = trainer_class(args.config)(config, str(args.config), out, restart=args.restart,
                                             progress=not args.no_progress)
    except (ConfigError, FileNotFoundError, training_data.TrainingDataError, ValueError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    try:
        result = trainer.run()
    except TrainingDivergedError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 3
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result is not None:
        print(f"held-out: {trainer.format_metrics(result['metrics'])}")
    if trainer.dist.main:
        print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
