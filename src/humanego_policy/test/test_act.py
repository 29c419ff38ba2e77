"""ACT: learns a tiny data set and reproduces it with z = 0; the CVAE terms against closed forms; padding and
invalid steps do not count; inference ignores noise and the style encoder.
(Its ONNX export and bundle: humanego_training's test_export_act.py.)"""

import numpy as np
import pytest
import torch

from humanego_policy.act import ACTPolicy, kl_to_standard_normal, masked_l1
from humanego_policy.policies import build_policy

TINY = {"horizon": 12, "image_size": [16, 16], "image_levels": 2, "image_channels": 8, "dim": 32, "heads": 2,
        "style_layers": 1, "encoder_layers": 1, "decoder_layers": 2, "ffn_dim": 64, "dropout": 0.0,
        "latent_dim": 4, "kl_weight": 1.0}
TOKEN_DIM, MAX_TOKENS = 20, 4


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def chunks_from_tokens(n: int, horizon: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    """Observations whose hand token and anchor token determine the chunk: a straight path from one to the
    other, the grasp closing half way; the last steps of odd samples past the demonstration's end."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, MAX_TOKENS, TOKEN_DIM)
    tokens[:, 0, 0], tokens[:, 1, 0] = 2, 3  # right hand, anchor
    tokens[:, :2, 1:4] = torch.randn(n, 2, 3, generator=g)
    mask = torch.zeros(n, MAX_TOKENS, dtype=torch.bool)
    mask[:, :2] = True
    s = torch.linspace(0, 1, horizon)[None, :, None]
    actions = torch.zeros(n, horizon, 10)
    actions[..., :3] = tokens[:, 0, None, 1:4] + s * (tokens[:, 1, None, 1:4] - tokens[:, 0, None, 1:4])
    actions[..., 3:9] = torch.tensor([1.0, 0, 0, 1, 0, 0])
    actions[..., 9] = (s[..., 0] > 0.5).float()
    valid = torch.ones(n, horizon, dtype=torch.bool)
    valid[1::2, -3:] = False
    return {"image": torch.rand(n, 3, 16, 16, generator=g), "tokens": tokens, "token_mask": mask,
            "actions": actions, "action_valid": valid, "done": (torch.arange(n) % 2).float()}


def test_loss_decreases_and_act_reproduces_its_training_set():
    torch.manual_seed(0)
    policy = build_policy("act", TINY, TOKEN_DIM, MAX_TOKENS)
    assert isinstance(policy, ACTPolicy) and policy.horizon == 12
    batch = chunks_from_tokens(4)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(250):
        loss, logs = policy.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["loss"])
    assert set(logs) == {"loss", "l1", "kl", "done_loss"}
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])
    out = policy.eval().predict(batch)
    assert out["actions"].shape == (4, 12, 10) and out["done_prob"].shape == (4,)
    valid = batch["action_valid"]
    error = (out["actions"] - batch["actions"]).abs()[valid]
    assert error[:, :3].mean() < 0.1, error[:, :3].mean()
    assert ((out["actions"][..., 9][valid] > 0.5) == (batch["actions"][..., 9][valid] > 0.5)).float().mean() > 0.95
    assert ((out["done_prob"] > 0.5).float() == batch["done"]).all()


def test_kl_and_masked_l1_against_closed_forms():
    mu, logvar = torch.tensor([[0.5, -1.0], [0.0, 0.2]]), torch.tensor([[0.1, -0.3], [0.0, 0.4]])
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), reference.sum(-1).mean())
    prediction = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [100.0, 100.0]]])
    valid = torch.tensor([[True, True, False]])
    assert float(masked_l1(prediction, target, valid)) == pytest.approx((2.0 + 2.0) / 2)


def test_invalid_steps_and_padding_tokens_change_nothing():
    torch.manual_seed(0)
    policy = build_policy("act", TINY, TOKEN_DIM, MAX_TOKENS).eval()
    batch = chunks_from_tokens(2)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["actions"][~batch["action_valid"]] = 50.0  # targets past the end
    changed["tokens"][~batch["token_mask"]] = 7.0      # padding rows
    torch.manual_seed(1)
    loss_a, _ = policy.loss(batch)
    torch.manual_seed(1)
    loss_b, _ = policy.loss(changed)
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(policy.predict(batch)["actions"], policy.predict(changed)["actions"])


def test_inference_ignores_noise_and_the_style_encoder():
    torch.manual_seed(0)
    policy = build_policy("act", TINY, TOKEN_DIM, MAX_TOKENS).eval()
    batch = chunks_from_tokens(3)
    first = policy.predict(batch, noise=torch.randn(3, 12, 10))
    with torch.no_grad():
        for p in policy.style_encoder.parameters():
            p.add_(1.0)
    second = policy.predict(batch, noise=torch.randn(3, 12, 10))
    torch.testing.assert_close(first["actions"], second["actions"])
    torch.testing.assert_close(first["done_prob"], second["done_prob"])


def test_default_chunk_is_100_steps():
    policy = build_policy("act", {"preset": "cpu", "image_size": [32, 32], "dim": 32, "ffn_dim": 64}, TOKEN_DIM,
                          MAX_TOKENS)
    assert policy.horizon == 100 and policy.config.latent_dim == 32
