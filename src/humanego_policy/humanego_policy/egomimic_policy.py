"""EgoMimic-style co-training policy: one trunk shared by human and robot data, a stem and heads per domain.

Inputs are the samples of :mod:`humanego_training.egomimic_dataset` (z-scored per domain): the camera image,
the domain (0 human, 1 robot), the ee position in the camera (both domains) and the joint positions (robot).

- **stems** (per domain): the proprioception as one token (human: ee position; robot: ee position and joint
  positions), plus a learned domain embedding;
- **trunk** (shared): image patch encoder, transformer encoder over [proprio token, image patch tokens], and an
  ACT decoder of ``horizon`` learned queries (:class:`humanego_policy.act.DecoderLayer`);
- **heads** (per domain): human -> future ee positions (H, 3); robot -> future ee positions (H, 3) and joint
  positions (H, J).

Loss: L1 over valid steps of each domain's outputs (ACT's regression loss; the trunk is a deterministic ACT,
without the CVAE's style variable), ``human_weight`` / ``robot_weight`` per domain; the robot's joint loss
weighs ``joint_weight``. ``predict`` returns normalised ``actions_xyz`` and
``actions_joints`` for every sample (the robot's joints are what it would execute).

The policy is trained and evaluated by ``humanego_training train`` like the others, but has no deployment
bundle: its outputs are EgoMimic's (xyz + joints), not the ICT action layout the policy node runs. The
token layout every checkpoint carries is unused by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from humanego_core.config import option
from humanego_policy.act import DecoderLayer, masked_l1
from humanego_policy.policies import EncoderLayer, ImagePatchEncoder, Policy, key_padding_bias

HUMAN, ROBOT = 0, 1
BATCH_KEYS = ("image", "domain", "ee_pose", "joint_positions", "actions_xyz", "actions_joints", "action_valid")


@dataclass
class EgoMimicConfig:
    joint_dim: int = option(help="Robot joints per step (arm joints + gripper; the robot HDF5's joint_names).",
                            minimum=1, maximum=64)
    horizon: int = option(100, help="Future steps per chunk (the HDF5 stores 100).", minimum=1, maximum=1000)
    image_size: list[int] = option(default_factory=lambda: [128, 128], help="Model input [height, width] in px.")
    image_levels: int = option(4, help="Stride-2 convolutions of the image stem.", minimum=1, maximum=6)
    image_channels: int = option(32, help="Channels of the first stem convolution.", minimum=4)
    dim: int = option(128, help="Model width.", minimum=8)
    heads: int = option(4, help="Attention heads (must divide dim).", minimum=1)
    encoder_layers: int = option(2, help="Shared transformer encoder layers.", minimum=1)
    decoder_layers: int = option(2, help="Shared decoder layers of the chunk queries.", minimum=1)
    ffn_dim: int = option(256, help="Hidden width of the feed-forward blocks.", minimum=8)
    dropout: float = option(0.1, help="Dropout while training.", minimum=0.0, maximum=0.9)
    human_weight: float = option(1.0, help="Weight of the human samples' loss.", minimum=0.0)
    robot_weight: float = option(1.0, help="Weight of the robot samples' loss.", minimum=0.0)
    joint_weight: float = option(1.0, help="Weight of the robot's joint loss next to its ee position loss.",
                                 minimum=0.0)


# "cpu" (the defaults): ACT's cpu sizes (humanego_policy.act); "gpu": ACT's published sizes.
PRESETS = {
    "cpu": {},
    "gpu": {"image_size": [224, 224], "image_channels": 64, "dim": 512, "heads": 8, "encoder_layers": 4,
            "decoder_layers": 7, "ffn_dim": 3200},
}


class EgoMimicPolicy(Policy):
    policy_type = "egomimic"
    Config = EgoMimicConfig
    PRESETS = PRESETS
    ONNX_LAYOUTS = ()

    def __init__(self, config: EgoMimicConfig, token_dim: int, max_tokens: int):
        super().__init__(config, token_dim, max_tokens)
        c = config
        self.human_stem = nn.Linear(3, c.dim)
        self.robot_stem = nn.Linear(3 + c.joint_dim, c.dim)
        self.domain_embedding = nn.Embedding(2, c.dim)
        self.image_encoder = ImagePatchEncoder(self.image_size, c.dim, c.image_levels, c.image_channels)
        self.encoder = nn.ModuleList(EncoderLayer(c.dim, c.heads, c.ffn_dim, c.dropout)
                                     for _ in range(c.encoder_layers))
        self.encoder_norm = nn.LayerNorm(c.dim)
        self.queries = nn.Parameter(torch.zeros(1, c.horizon, c.dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.decoder = nn.ModuleList(DecoderLayer(c.dim, c.heads, c.ffn_dim, c.dropout)
                                     for _ in range(c.decoder_layers))
        self.head_norm = nn.LayerNorm(c.dim)
        self.human_xyz = nn.Linear(c.dim, 3)
        self.robot_xyz = nn.Linear(c.dim, 3)
        self.robot_joints = nn.Linear(c.dim, c.joint_dim)

    def check_batch(self, batch: dict[str, torch.Tensor], keys=BATCH_KEYS) -> None:
        h, w = self.image_size
        b, H, J = batch["image"].shape[0], self.horizon, self.config.joint_dim
        expected = {"image": (b, 3, h, w), "domain": (b,), "ee_pose": (b, 3), "joint_positions": (b, J),
                    "actions_xyz": (b, H, 3), "actions_joints": (b, H, J), "action_valid": (b, H)}
        for key in keys:
            if key not in batch:
                raise ValueError(f"batch has no {key!r} (keys: {', '.join(batch)})")
            if tuple(batch[key].shape) != expected[key]:
                raise ValueError(f"batch[{key!r}] has shape {tuple(batch[key].shape)}, the egomimic policy expects "
                                 f"{expected[key]}")

    def forward_heads(self, image: torch.Tensor, domain: torch.Tensor, ee_pose: torch.Tensor,
                      joint_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(future ee positions (B, H, 3) from each sample's own domain head, robot joints (B, H, J))."""
        robot = (domain == ROBOT)[:, None]
        proprio = torch.where(robot, self.robot_stem(torch.cat([ee_pose, joint_positions], dim=-1)),
                              self.human_stem(ee_pose)) + self.domain_embedding(domain.long())
        patches = self.image_encoder(image)
        x = torch.cat([proprio[:, None], patches], dim=1)
        bias = key_padding_bias(torch.ones_like(x[..., 0], dtype=torch.bool))
        for layer in self.encoder:
            x = layer(x, bias)
        memory = self.encoder_norm(x)
        h = self.queries.expand(x.shape[0], -1, -1)
        for layer in self.decoder:
            h = layer(h, memory, bias)
        h = self.head_norm(h)
        xyz = torch.where(robot[:, :, None], self.robot_xyz(h), self.human_xyz(h))
        return xyz, self.robot_joints(h)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        self.check_batch(batch)
        xyz, joints = self.forward_heads(batch["image"], batch["domain"], batch["ee_pose"], batch["joint_positions"])
        c, valid = self.config, batch["action_valid"]
        robot = batch["domain"] == ROBOT
        zero = xyz.sum() * 0.0  # keeps every head in the graph when a batch lacks a domain (DDP needs all grads)
        human_loss = masked_l1(xyz, batch["actions_xyz"], valid & ~robot[:, None]) if (~robot).any() else zero
        if robot.any():
            robot_loss = (masked_l1(xyz, batch["actions_xyz"], valid & robot[:, None])
                          + c.joint_weight * masked_l1(joints, batch["actions_joints"], valid & robot[:, None]))
        else:
            robot_loss = zero + joints.sum() * 0.0
        loss = c.human_weight * human_loss + c.robot_weight * robot_loss
        return loss, {"loss": float(loss.detach()), "human_l1": float(human_loss.detach()),
                      "robot_l1": float(robot_loss.detach())}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor], noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Normalised ``actions_xyz`` (B, H, 3) by each sample's domain head and ``actions_joints`` (B, H, J);
        ``noise`` is ignored (deterministic)."""
        xyz, joints = self.forward_heads(batch["image"], batch["domain"], batch["ee_pose"], batch["joint_positions"])
        return {"actions_xyz": xyz, "actions_joints": joints}
