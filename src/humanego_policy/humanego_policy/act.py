"""ACT (Action Chunking with Transformers, Zhao et al. 2023) on image patch tokens and interaction tokens.

A conditional VAE whose decoder is the policy:

- **style encoder** (training only): a CLS token, the embedded interaction tokens (ACT's joint state) and the
  embedded target chunk (one token per step, steps past the demonstration's end masked as ACT masks its
  padding) through transformer layers; the CLS output gives the mean and log-variance of the latent style
  ``z`` (``latent_dim``);
- **policy**: a transformer encoder over [latent token (``z`` projected), done token, image patch tokens,
  interaction tokens] and a decoder of ``horizon`` learned queries (self-attention over the chunk,
  cross-attention to the encoder output, feed-forward) with a linear head per step; the done probability is
  read from the done token.

Training: L1 between the predicted and the target chunk over valid steps, plus ``kl_weight`` times the KL
divergence of ``N(mu, sigma)`` from ``N(0, I)`` (summed over latent dimensions, averaged over the batch), plus
``done_weight`` times the done head's binary cross-entropy. Inference: ``z = 0`` (the prior's mean), one
forward pass, no sampling: ``noise`` of the policy interface is accepted and ignored, and the ONNX graph has
no noise input.

The chunk (``horizon`` x 10, steps t+1..t+H at 30 Hz, absolute poses in the reference frame) is what ACT's
temporal ensembling averages on the robot side (:class:`humanego_core.ensembling.TemporalEnsembler`, fed by
the action_chunk messages' stamp and dt): every step of every chunk is a full pose, so overlapping chunks
can be averaged per time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from humanego_core.config import option
from humanego_policy.policies import (
    Attention,
    EncoderLayer,
    ImagePatchEncoder,
    OnnxGraph,
    Policy,
    TokenEmbedding,
    feed_forward,
    key_padding_bias,
)


@dataclass
class ACTConfig:
    horizon: int = option(100, help="Chunk size: future steps per chunk (30 Hz steps t+1..t+horizon).",
                          minimum=1, maximum=1000)
    image_size: list[int] = option(default_factory=lambda: [128, 128], help="Model input [height, width] in px; "
                                   "frames are area-resized to it (humanego_policy.policies.prepare_image).")
    image_levels: int = option(4, help="Stride-2 convolutions of the image stem; patch tokens are "
                               "image_size / 2^image_levels per side.", minimum=1, maximum=6)
    image_channels: int = option(32, help="Channels of the first stem convolution (doubling per level, up to dim).",
                                 minimum=4)
    dim: int = option(128, help="Model width.", minimum=8)
    heads: int = option(4, help="Attention heads (must divide dim).", minimum=1)
    style_layers: int = option(1, help="Transformer layers of the CVAE style encoder (training only).", minimum=1)
    encoder_layers: int = option(2, help="Transformer layers over the observation.", minimum=1)
    decoder_layers: int = option(2, help="Decoder layers of the chunk queries.", minimum=1)
    ffn_dim: int = option(256, help="Hidden width of the feed-forward blocks.", minimum=8)
    dropout: float = option(0.1, help="Dropout in attention outputs and feed-forward blocks while training.",
                            minimum=0.0, maximum=0.9)
    latent_dim: int = option(32, help="Size of the CVAE's style variable z.", minimum=1)
    kl_weight: float = option(10.0, help="Weight of the KL term (ACT's beta).", minimum=0.0)
    done_weight: float = option(0.5, help="Weight of the done loss.", minimum=0.0)


# "cpu" (the defaults): trains serve_bread on 2 cores in the CPU budget; with 100 queries and the style encoder a
# training step costs what flow matching's 3-decoder-layer, 512 feed-forward "cpu" preset costs at 50 queries
# (~1 CPU-s per 64 samples at 96 px). "gpu": ACT's published sizes (512 wide, 4 encoder and 7 decoder layers,
# 3200 feed-forward, 4-layer style encoder).
PRESETS = {
    "cpu": {},
    "gpu": {"image_size": [224, 224], "image_channels": 64, "dim": 512, "heads": 8, "style_layers": 4,
            "encoder_layers": 4, "decoder_layers": 7, "ffn_dim": 3200},
}


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer: self-attention over the queries, cross-attention to a memory,
    feed-forward."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attention = Attention(dim, heads)
        self.cross_attention = Attention(dim, heads)
        self.mlp = feed_forward(dim, hidden, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.norm_self(x)))
        x = x + self.dropout(self.cross_attention.attend(self.norm_cross(x), self.cross_attention.keys_values(memory),
                                                         memory_bias))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the valid steps (``valid`` (B, H) bool) and every action dimension."""
    error = (prediction - target).abs().mean(dim=-1)
    weight = valid.to(error.dtype)
    return (error * weight).sum() / weight.sum().clamp(min=1.0)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=-1).mean()


class ACTPolicy(Policy):
    policy_type = "act"
    Config = ACTConfig
    PRESETS = PRESETS

    def __init__(self, config: ACTConfig, token_dim: int, max_tokens: int):
        super().__init__(config, token_dim, max_tokens)
        c = config

        def encoder_stack(layers: int) -> nn.ModuleList:
            return nn.ModuleList(EncoderLayer(c.dim, c.heads, c.ffn_dim, c.dropout) for _ in range(layers))

        # CVAE style encoder
        self.style_cls = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.style_tokens = TokenEmbedding(token_dim, max_tokens, c.dim)
        self.style_actions = nn.Linear(self.action_dim, c.dim)
        self.style_steps = nn.Parameter(torch.zeros(1, c.horizon, c.dim))
        self.style_encoder = encoder_stack(c.style_layers)
        self.style_norm = nn.LayerNorm(c.dim)
        self.latent_head = nn.Linear(c.dim, 2 * c.latent_dim)
        # observation encoder
        self.image_encoder = ImagePatchEncoder(self.image_size, c.dim, c.image_levels, c.image_channels)
        self.token_embedding = TokenEmbedding(token_dim, max_tokens, c.dim)
        self.latent_in = nn.Linear(c.latent_dim, c.dim)
        self.latent_position = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.done_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.encoder = encoder_stack(c.encoder_layers)
        self.encoder_norm = nn.LayerNorm(c.dim)
        self.done_head = nn.Linear(c.dim, 1)
        # chunk decoder
        self.queries = nn.Parameter(torch.zeros(1, c.horizon, c.dim))
        self.decoder = nn.ModuleList(DecoderLayer(c.dim, c.heads, c.ffn_dim, c.dropout)
                                     for _ in range(c.decoder_layers))
        self.head_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, self.action_dim)
        for parameter in (self.style_cls, self.style_steps, self.latent_position, self.done_token, self.queries):
            nn.init.trunc_normal_(parameter, std=0.02)

    def style(self, tokens: torch.Tensor, token_mask: torch.Tensor, actions: torch.Tensor,
              action_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) (B, latent_dim) of the style of a target chunk."""
        batch = actions.shape[0]
        x = torch.cat([self.style_cls.expand(batch, -1, -1), self.style_tokens(tokens),
                       self.style_actions(actions) + self.style_steps], dim=1)
        always = torch.ones(batch, 1, dtype=torch.bool, device=actions.device)
        bias = key_padding_bias(torch.cat([always, token_mask.bool(), action_valid.bool()], dim=1))
        for layer in self.style_encoder:
            x = layer(x, bias)
        mu, logvar = self.latent_head(self.style_norm(x[:, 0])).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, image: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor,
               z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions (B, H, 10), done logit (B,)) of an observation and a style ``z`` (B, latent_dim)."""
        patches = self.image_encoder(image)
        batch = patches.shape[0]
        latent = self.latent_in(z)[:, None] + self.latent_position
        x = torch.cat([latent, self.done_token.expand(batch, -1, -1), patches, self.token_embedding(tokens)], dim=1)
        always = torch.ones_like(x[:, : 2 + patches.shape[1], 0], dtype=torch.bool)
        bias = key_padding_bias(torch.cat([always, token_mask.bool()], dim=1))
        for layer in self.encoder:
            x = layer(x, bias)
        memory = self.encoder_norm(x)
        h = self.queries.expand(batch, -1, -1)
        for layer in self.decoder:
            h = layer(h, memory, bias)
        return self.head(self.head_norm(h)), self.done_head(memory[:, 1]).squeeze(-1)

    # --- the policy interface ---
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        self.check_batch(batch)
        actions, valid = batch["actions"], batch["action_valid"]
        mu, logvar = self.style(batch["tokens"], batch["token_mask"], actions, valid)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        predicted, done_logit = self.decode(batch["image"], batch["tokens"], batch["token_mask"], z)
        l1 = masked_l1(predicted, actions, valid)
        kl = kl_to_standard_normal(mu, logvar)
        done_loss = F.binary_cross_entropy_with_logits(done_logit, batch["done"].to(done_logit.dtype))
        loss = l1 + self.config.kl_weight * kl + self.config.done_weight * done_loss
        return loss, {"loss": float(loss.detach()), "l1": float(l1.detach()), "kl": float(kl.detach()),
                      "done_loss": float(done_loss.detach())}

    def infer(self, image, tokens, token_mask, noise=None):
        """Chunk and done probability with ``z = 0``; ``noise`` is ignored (ACT does not sample)."""
        z = torch.zeros(image.shape[0], self.config.latent_dim, device=image.device, dtype=image.dtype)
        actions, done_logit = self.decode(image, tokens, token_mask, z)
        return actions, torch.sigmoid(done_logit)

    def onnx_graphs(self, layout: str) -> list[OnnxGraph]:
        """``single``: ``policy`` (image, tokens, token_mask -> actions, done_prob); no noise input."""
        (graph,) = super().onnx_graphs(layout)
        graph.inputs.pop("noise")
        return [OnnxGraph("policy", _Infer(self), graph.inputs, graph.outputs)]


class _Infer(nn.Module):
    def __init__(self, policy: ACTPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, image, tokens, token_mask):
        return self.policy.infer(image, tokens, token_mask)
