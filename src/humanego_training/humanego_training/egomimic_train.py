"""EgoMimic co-training through ``humanego_training train``: the trainer's data hooks for the HDF5 export.

``humanego run humanego_training train --config config/training/serve_bread_egomimic.yaml`` picks this
trainer for ``policy.type: egomimic`` (:func:`humanego_training.train.trainer_class`). Everything else — seeds,
AdamW + cosine, EMA, resumable ``latest.pt``, DDP under torchrun, NaN batches skipped, curves — is
:class:`humanego_training.train.Trainer`'s. The YAML's ``data`` section is
:class:`~humanego_training.egomimic_dataset.EgoMimicDataConfig` (human and robot HDF5 files; their
``mask/train`` demos train, ``mask/valid`` demos evaluate), ``policy.config`` the
:class:`~humanego_policy.egomimic_policy.EgoMimicConfig` (``joint_dim`` is taken from the robot files).

Evaluation (``eval_snapshots/eval_ep_XXXX.json``) reports per domain the position errors of DESIGN.md section 6
on de-normalised ee positions (``human/pos_err_w_m``, ``robot/pos_err_k1_m``, ...) and the robot's
horizon-weighted mean absolute joint error ``robot/joint_err_w`` (rad; m for the gripper). There are no eval
videos (the HDF5 has no camera intrinsics to draw paths with) and no deployment bundle (see egomimic_policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from humanego_core.config import option, to_dict
from humanego_core.ict import ICTConfig
from humanego_core.metrics import horizon_weights
from humanego_policy.checkpoint import TokenLayout
from humanego_policy.egomimic_policy import BATCH_KEYS, ROBOT
from humanego_policy.policies import PolicyConfigError, build_policy
from humanego_training.dataset import AugmentConfig, augment_batch
from humanego_training.egomimic_dataset import (
    DOMAINS,
    DomainStats,
    EgoMimicDataConfig,
    EgoMimicDataset,
    compute_stats,
    load_demos,
    position_metrics,
)
from humanego_training.robot_episodes import FPS
from humanego_training.stage_cache import write_json_atomic
from humanego_training.train import PolicySection, Trainer, TrainSettings


@dataclass
class EgoMimicTrainingData(EgoMimicDataConfig):
    augment: AugmentConfig = option(default_factory=lambda: AugmentConfig(crop_scale=1.0),
                                    help="training-time augmentation (a crop would change what the camera-frame "
                                         "targets look like: off by default)")


@dataclass
class EgoMimicTrainingConfig:
    task: str = option(help="task name, recorded in the run (e.g. serve_bread)")
    data: EgoMimicTrainingData = option(help="EgoMimic HDF5 files of both domains")
    train: TrainSettings = option(help="optimisation and bookkeeping")
    policy: PolicySection = option(default_factory=lambda: PolicySection(type="egomimic"),
                                   help="policy type (egomimic) and settings")


class EgoMimicTrainer(Trainer):
    config_schema = EgoMimicTrainingConfig
    model_keys = BATCH_KEYS

    def build_policy(self, source: str) -> None:
        config, data = self.config, self.config.data
        self.train_demos, joint_names = load_demos(data, "train")
        self.eval_demos, _ = load_demos(data, "valid")
        policy_config = dict(config.policy.config)
        joint_dim = max(1, len(joint_names))  # human-only training keeps a (unused) one-joint robot head
        if policy_config.setdefault("joint_dim", joint_dim) != joint_dim:
            raise PolicyConfigError(source, "policy.config.joint_dim", f"{policy_config['joint_dim']} but the robot "
                                    f"files hold {joint_dim} joints ({', '.join(joint_names)})")
        # The checkpoint format carries a token layout; this policy reads no tokens, so it is the default one.
        ict = ICTConfig()
        self.layout = TokenLayout.from_ict(ict)
        self.policy = build_policy(config.policy.type, policy_config, ict.token_dim, ict.max_tokens,
                                   source=f"{source}: policy.config")
        self.joint_names = joint_names
        self.resolved = to_dict(config)
        self.resolved["policy"]["resolved"] = self.policy.config_dict()
        self.resolved["split"] = {"train": [d.source for d in self.train_demos],
                                  "held_out": [d.source for d in self.eval_demos], "joint_names": joint_names}

    def load_data(self, progress: bool) -> None:
        data = self.config.data
        counts = {split: {d: sum(demo.domain == d for demo in demos) for d in DOMAINS}
                  for split, demos in (("training", self.train_demos), ("held-out", self.eval_demos))}
        self.log(", ".join(f"{split}: {c['human']} human and {c['robot']} robot demos" for split, c in counts.items()))
        if self.resume is not None:
            self.stats = DomainStats.from_dict(self.resume.dataset_stats, f"{self.resume.path}: dataset_stats")
        else:
            self.stats = compute_stats(self.train_demos)
        p = self.policy
        self.train_set = EgoMimicDataset(self.train_demos, self.stats, p.horizon, p.image_size, p.config.joint_dim,
                                         data, balance=True, seed=self.settings.seed, progress=progress)
        self.eval_set = EgoMimicDataset(self.eval_demos, self.stats, p.horizon, p.image_size, p.config.joint_dim,
                                        data, progress=progress) if self.eval_demos else None
        self.train_demos = self.eval_demos = None  # the datasets hold what they need

    @property
    def dt(self) -> float:
        return 1.0 / FPS

    @property
    def curve_metrics(self):
        domains = sorted(set(self.eval_set.domain.tolist())) if self.eval_set is not None else []
        curves = [(f"{DOMAINS[d]}/pos_err_w_m", 100.0, f"{DOMAINS[d]} pos_err_w (cm)") for d in domains]
        if ROBOT in domains:
            curves.append(("robot/joint_err_w", 1.0, "robot joint_err_w"))
        return tuple(curves)

    def augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        augment = self.config.data.augment
        if augment.enabled:
            K = torch.eye(3).expand(batch["image"].shape[0], 3, 3)  # no image-space annotation to carry along
            batch["image"], _ = augment_batch(batch["image"], K, augment, self.generator)
        return batch

    @staticmethod
    def format_metrics(metrics: dict) -> str:
        parts = [f"{d} pos_err_w {metrics[f'{d}/pos_err_w_m'] * 100:.2f} cm" for d in DOMAINS
                 if f"{d}/pos_err_w_m" in metrics]
        if "robot/joint_err_w" in metrics:
            parts.append(f"robot joint_err_w {metrics['robot/joint_err_w']:.4f}")
        return ", ".join(parts) + f" ({metrics['samples']} samples)"

    def evaluate(self, final: bool) -> dict | None:
        if not self.dist.main:
            return None
        s = self.settings
        indices = np.arange(len(self.eval_set))
        if not final and s.eval_max_samples is not None and s.eval_max_samples < len(indices):
            indices = np.unique(np.linspace(0, len(indices) - 1, s.eval_max_samples).round().astype(np.int64))
        metrics = evaluate_egomimic(self.eval_policy(), self.eval_set, self.stats, indices, s.eval_batch_size,
                                    self.device, s.metrics_k)
        result = {"epoch": self.epoch, "step": self.step, "weights": "ema" if self.ema else "raw",
                  "metrics": metrics, "demos": self.eval_set.sources, "rejected": dict(self.eval_set.rejected)}
        path = self.out / "eval_snapshots" / f"eval_ep_{self.epoch:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(path), result)
        self.history.evals.append({"epoch": self.epoch, "step": self.step, **metrics})
        self.log(f"epoch {self.epoch}: {self.format_metrics(metrics)}")
        return result


@torch.no_grad()
def evaluate_egomimic(policy, dataset: EgoMimicDataset, stats: DomainStats, indices: np.ndarray,
                      batch_size: int = 128, device: str | torch.device = "cpu", k: int | None = None) -> dict:
    """Per-domain metrics (module docstring) of ``policy`` on ``dataset[indices]``, plus ``samples``."""
    was_training = policy.training
    policy.eval()
    xyz, joints = [], []
    for start in range(0, len(indices), batch_size):
        batch = torch.utils.data.default_collate([dataset[int(i)] for i in indices[start:start + batch_size]])
        out = policy.predict({key: batch[key].to(device) for key in BATCH_KEYS})
        xyz.append(out["actions_xyz"].float().cpu().numpy())
        joints.append(out["actions_joints"].float().cpu().numpy())
    policy.train(was_training)
    xyz, joints = np.concatenate(xyz), np.concatenate(joints)
    rows = dataset.index[indices]
    metrics: dict = {"samples": len(indices)}
    for d, domain in enumerate(DOMAINS):
        mine = dataset.domain[rows] == d
        if not mine.any():
            continue
        s = stats[domain]
        valid = dataset.action_valid[rows[mine]]
        pred = s["actions_xyz_act"].denormalise(xyz[mine])
        target = s["actions_xyz_act"].denormalise(dataset.actions_xyz[rows[mine]])
        horizon = pred.shape[1]
        metrics.update({f"{domain}/{key}": value
                        for key, value in position_metrics(pred, target, valid, k or horizon).items()})
        metrics[f"{domain}/samples"] = int(mine.sum())
        if domain == "robot":
            error = np.abs(s["actions_joints_act"].denormalise(joints[mine])
                           - s["actions_joints_act"].denormalise(dataset.actions_joints[rows[mine]])).mean(axis=-1)
            w = horizon_weights(horizon)[None, :] * valid
            metrics["robot/joint_err_w"] = float((w * error).sum() / w.sum())
    return metrics
