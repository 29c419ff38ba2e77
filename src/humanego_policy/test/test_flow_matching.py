"""Flow-matching policy: it learns a tiny data set and reproduces it by integration; the context is encoded once
per inference; the loss counts only valid steps; settings are validated."""

import numpy as np
import pytest
import torch

from humanego_core.config import ConfigError
from humanego_policy.flow_matching import FlowMatchingPolicy
from humanego_policy.integration import euler_integrate
from humanego_policy.policies import build_policy, nonfinite_keys, prepare_image

TINY = {"horizon": 8, "image_size": [16, 16], "image_levels": 2, "image_channels": 8, "dim": 32, "heads": 2,
        "encoder_layers": 1, "decoder_layers": 2, "ffn_dim": 64, "dropout": 0.0, "num_steps": 10}
TOKEN_DIM, MAX_TOKENS = 20, 4


@pytest.fixture(autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_batch(n: int, horizon: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` observations whose tokens determine smooth action chunks (a line from the token's xyz)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, MAX_TOKENS, TOKEN_DIM)
    tokens[:, 0, 0] = 2  # a right hand
    tokens[:, 0, 1:4] = torch.randn(n, 3, generator=g)
    tokens[:, 1, 0] = 3  # the anchor
    tokens[:, 1, 1:4] = torch.randn(n, 3, generator=g)
    mask = torch.zeros(n, MAX_TOKENS, dtype=torch.bool)
    mask[:, :2] = True
    steps = torch.linspace(0, 1, horizon)[None, :, None]
    start, goal = tokens[:, 0, None, 1:4], tokens[:, 1, None, 1:4]
    actions = torch.zeros(n, horizon, 10)
    actions[..., :3] = start + steps * (goal - start)
    actions[..., 3:9] = torch.tensor([1.0, 0, 0, 1, 0, 0])
    actions[..., 9] = (steps[..., 0] > 0.5).float()
    return {"image": torch.rand(n, 3, 16, 16, generator=g), "tokens": tokens, "token_mask": mask,
            "actions": actions, "action_valid": torch.ones(n, horizon, dtype=torch.bool),
            "done": (torch.arange(n) % 2).float()}


def train(policy, batch, steps: int, lr: float = 3e-3) -> list[float]:
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    policy.train()
    for _ in range(steps):
        loss, logs = policy.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["loss"])
    return losses


@pytest.mark.parametrize("settings", [{}, {"relative_to_hand": True}, {"use_image": False}],
                         ids=["absolute", "relative_to_hand", "without_image"])
def test_loss_decreases_and_the_policy_reproduces_its_training_set(settings):
    torch.manual_seed(0)
    policy = build_policy("flow", {**TINY, **settings}, TOKEN_DIM, MAX_TOKENS)
    batch = tiny_batch(4)
    losses = train(policy, batch, 200)
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])
    out = policy.eval().predict(batch, noise=torch.randn(4, 8, 10, generator=torch.Generator().manual_seed(5)))
    assert out["actions"].shape == (4, 8, 10) and out["done_prob"].shape == (4,)
    error = (out["actions"] - batch["actions"]).abs()
    assert error[..., :3].mean() < 0.1, error[..., :3].mean()
    assert ((out["actions"][..., 9] > 0.5) == (batch["actions"][..., 9] > 0.5)).float().mean() > 0.95
    assert ((out["done_prob"] > 0.5).float() == batch["done"]).all()


def test_the_context_is_encoded_once_per_inference():
    policy = build_policy("flow", TINY, TOKEN_DIM, MAX_TOKENS).eval()
    calls = {"encode": 0, "kv": 0, "velocity": 0}
    encode, velocity = policy.encode, policy.velocity

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    policy.encode, policy.velocity = counted("encode", encode), counted("velocity", velocity)
    for layer in policy.decoder:
        layer.cross_attention.kv.register_forward_hook(lambda *_: calls.__setitem__("kv", calls["kv"] + 1))
    policy.predict(tiny_batch(2))
    assert calls == {"encode": 1, "kv": len(policy.decoder), "velocity": TINY["num_steps"]}


def euler_by_hand(policy, batch, noise) -> tuple[torch.Tensor, torch.Tensor]:
    """(the flow integrated from ``noise`` in 10 Euler steps, written out here; the done logit)."""
    with torch.no_grad():
        kv, bias, done_logit = policy.encode(batch["image"], batch["tokens"], batch["token_mask"])
        x = noise.clone()
        for k in range(10):
            x = x + 0.1 * policy.velocity(x, torch.full((len(noise),), k / 10), kv, bias)
    return x, done_logit


def test_predict_is_euler_integration_of_the_velocity_from_the_given_noise():
    policy = build_policy("flow", TINY, TOKEN_DIM, MAX_TOKENS).eval()
    batch = tiny_batch(2)
    noise = torch.randn(2, 8, 10)
    x, done_logit = euler_by_hand(policy, batch, noise)
    out = policy.predict(batch, noise=noise)
    torch.testing.assert_close(out["actions"], x)
    torch.testing.assert_close(out["done_prob"], torch.sigmoid(done_logit))
    # The same loop runs on numpy arrays (the onnxruntime backend): dx/dt = -x from 1 gives (1 - 1/n)^n.
    assert euler_integrate(lambda x, t: -x, np.float32(1.0), 4) == pytest.approx(0.75 ** 4)


def test_relative_chunks_are_offsets_from_the_hand_token():
    policy = build_policy("flow", {**TINY, "relative_to_hand": True}, TOKEN_DIM, MAX_TOKENS).eval()
    batch = tiny_batch(3)
    batch["tokens"][:, 0, 4:10] = torch.randn(3, 6)  # a rot6d that is not the identity's
    batch["tokens"][1, 0, 0] = 3                       # sample 1: no hand, an object comes first
    batch["token_mask"][2, 0] = False                  # sample 2: the first row is padding
    origin = policy.origin(batch["tokens"], batch["token_mask"])
    assert origin.shape == (3, 1, 10)
    torch.testing.assert_close(origin[0, 0, :9], batch["tokens"][0, 0, 1:10])
    assert origin[0, 0, 9] == 0 and not origin[1:].any()  # the grasp stays absolute
    noise = torch.randn(3, 8, 10)
    x, _ = euler_by_hand(policy, batch, noise)
    torch.testing.assert_close(policy.predict(batch, noise=noise)["actions"], x + origin)
    # The loss sees the chunk relative to the hand: moving both by the same offset leaves only the context changed.
    absolute = build_policy("flow", TINY, TOKEN_DIM, MAX_TOKENS)
    absolute.load_state_dict(policy.state_dict())
    shifted = dict(batch, actions=batch["actions"] - origin)
    torch.manual_seed(2)
    relative_loss, _ = policy.loss(batch)
    torch.manual_seed(2)
    torch.testing.assert_close(absolute.loss(shifted)[0], relative_loss)
    with pytest.raises(ValueError, match="single-hand token layout"):
        build_policy("flow", {**TINY, "relative_to_hand": True}, 29, MAX_TOKENS)


def test_without_the_image_the_context_is_the_tokens_alone():
    torch.manual_seed(0)
    policy = build_policy("flow", {**TINY, "use_image": False}, TOKEN_DIM, MAX_TOKENS).eval()
    assert policy.image_encoder is None
    batch = tiny_batch(3)
    noise = torch.randn(3, 8, 10, generator=torch.Generator().manual_seed(2))
    seen = policy.predict(batch, noise=noise)["actions"]
    other_image = policy.predict({**batch, "image": torch.rand_like(batch["image"])}, noise=noise)["actions"]
    torch.testing.assert_close(other_image, seen, rtol=0, atol=0)
    moved_hand = {**batch, "tokens": batch["tokens"].clone()}
    moved_hand["tokens"][:, 0, 1:4] += 0.5
    assert (policy.predict(moved_hand, noise=noise)["actions"] - seen).abs().max() > 1e-3


def test_invalid_steps_do_not_count_in_the_loss():
    policy = build_policy("flow", TINY, TOKEN_DIM, MAX_TOKENS)
    batch = tiny_batch(3)
    batch["action_valid"][:, 5:] = False
    torch.manual_seed(1)
    reference, _ = policy.loss(batch)
    batch["actions"][:, 5:] = 1e6  # garbage where the demonstration has ended
    torch.manual_seed(1)
    garbage, _ = policy.loss(batch)
    assert torch.isclose(reference, garbage)


def test_padding_tokens_do_not_change_the_prediction():
    policy = build_policy("flow", TINY, TOKEN_DIM, MAX_TOKENS).eval()
    batch = tiny_batch(2)
    noise = torch.randn(2, 8, 10)
    before = policy.predict(batch, noise=noise)["actions"]
    batch["tokens"][:, 2:] = torch.randn(2, MAX_TOKENS - 2, TOKEN_DIM)  # masked rows
    torch.testing.assert_close(policy.predict(batch, noise=noise)["actions"], before)


def test_settings_are_validated_naming_the_key():
    with pytest.raises(ConfigError, match="training.yaml: dimm: unknown key; did you mean 'dim'"):
        build_policy("flow", {"dimm": 64}, TOKEN_DIM, MAX_TOKENS, source="training.yaml")
    with pytest.raises(ConfigError, match="preset"):
        build_policy("flow", {"preset": "huge"}, TOKEN_DIM, MAX_TOKENS)
    with pytest.raises(ConfigError, match="unknown policy type 'diffusion'"):
        build_policy("diffusion", {}, TOKEN_DIM, MAX_TOKENS)
    with pytest.raises(ValueError, match="divisible by the encoder stride"):
        build_policy("flow", {**TINY, "image_size": [18, 16]}, TOKEN_DIM, MAX_TOKENS)
    gpu = build_policy("flow", {"preset": "gpu", "num_steps": 5}, TOKEN_DIM, MAX_TOKENS)
    assert isinstance(gpu, FlowMatchingPolicy) and gpu.config.dim == 384 and gpu.config.num_steps == 5


def test_batches_of_the_wrong_shape_or_with_nan_are_recognised():
    policy = build_policy("flow", TINY, TOKEN_DIM, MAX_TOKENS)
    batch = tiny_batch(2, horizon=6)
    with pytest.raises(ValueError, match=r"batch\['actions'\] has shape \(2, 6, 10\).*\(2, 8, 10\)"):
        policy.loss(batch)
    batch = tiny_batch(2)
    assert nonfinite_keys(batch) == []
    batch["tokens"][0, 0, 1] = float("nan")
    assert nonfinite_keys(batch) == ["tokens"]


def test_prepare_image_resizes_and_scales():
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :24] = 255
    out = prepare_image(image, (16, 24))
    assert out.shape == (3, 16, 24) and out.dtype == np.float32
    assert out[:, :, :12].min() == 1.0 and out[:, :, 12:].max() == 0.0
    with pytest.raises(ValueError, match="RGB uint8"):
        prepare_image(image.astype(np.float32), (16, 24))
