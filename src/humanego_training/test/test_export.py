"""Export and runtime: a checkpoint becomes a bundle whose ONNX graphs agree with torch within 1e-4 on the same
noise (both layouts); the runtime decodes chunks; bundles for other tokens or action sizes, inconsistent graphs
and missing files are refused naming what does not fit."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from humanego_core.actions import NormStats, decode_actions
from humanego_policy.bundle import BundleError
from humanego_policy.checkpoint import CheckpointError, TokenLayout, load_checkpoint, save_checkpoint
from humanego_policy.policies import build_policy
from humanego_policy.runtime import PolicyRuntime
from humanego_training.export import check_parity, export_bundle, main, random_observations

TINY = {"horizon": 8, "image_size": [16, 16], "image_levels": 2, "image_channels": 8, "dim": 32, "heads": 2,
        "encoder_layers": 1, "decoder_layers": 2, "ffn_dim": 64, "dropout": 0.0, "num_steps": 5}
STATS = NormStats(np.array([0.4, 0.0, 0.2]), np.array([0.1, 0.2, 0.05]), {"frames": 12})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_checkpoint(path, dual_hand=False, seed=0, **settings):
    """A tiny flow policy (``settings`` over TINY) with every weight random (zero-initialised gates included, so
    that every path of the graphs carries signal) and an EMA that differs from the raw weights."""
    torch.manual_seed(seed)
    layout = TokenLayout(29 if dual_hand else 20, 6, "camera_frame", dual_hand, "right")
    policy = build_policy("flow", {**TINY, **settings}, layout.token_dim, layout.max_tokens)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ema = {k: v + 0.01 for k, v in policy.state_dict().items()}
    return save_checkpoint(path, policy, layout, STATS.to_dict(), dt=1 / 30, ema_state_dict=ema,
                           training={"step": 7})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("run") / "latest.pt")


@pytest.fixture(scope="module")
def bundle(checkpoint, tmp_path_factory):
    return export_bundle(checkpoint.parent, tmp_path_factory.mktemp("models") / "tiny_flow", progress=False).path


@pytest.mark.parametrize("settings", [{}, {"relative_to_hand": True}, {"use_image": False}],
                         ids=["absolute", "relative_to_hand", "without_image"])
@pytest.mark.parametrize("layout", ["encoder_step", "single"])
def test_onnxruntime_matches_torch_on_the_same_noise(checkpoint, tmp_path, layout, settings):
    if settings:
        checkpoint = make_checkpoint(tmp_path / "variant" / "latest.pt", **settings)
    result = export_bundle(checkpoint, tmp_path / "b", layout=layout, progress=False)
    assert result.layout == layout and result.parity_max_abs_diff <= 1e-4
    expected_files = {"encoder_step": {"encoder.onnx", "step.onnx"}, "single": {"policy.onnx"}}[layout]
    assert set(result.files) == expected_files | {"bundle.json", "dataset_stats.json", "policy.pt"}
    # Independently of export's own check: the EMA weights of the checkpoint, run by torch here, on batch 3.
    policy = load_checkpoint(checkpoint).build_policy(use_ema=True)
    runtime = PolicyRuntime(result.path, backend="onnxruntime")
    image, tokens, mask, noise = random_observations(runtime, 3, seed=1)
    tokens[:2, 0, 0] = 2  # two observations with a hand token (the origin of relative chunks), one without
    tokens[2, 0, 0] = 3
    actions, done = runtime.run(image, tokens, mask, noise)
    with torch.no_grad():
        ref = policy.predict({"image": torch.from_numpy(image), "tokens": torch.from_numpy(tokens),
                              "token_mask": torch.from_numpy(mask)}, noise=torch.from_numpy(noise))
    assert np.abs(actions - ref["actions"].numpy()).max() <= 1e-4
    assert np.abs(done - ref["done_prob"].numpy()).max() <= 1e-4
    assert np.abs(actions).max() > 0.1  # not a degenerate output
    # The context is computed once per inference in either layout: the image stem's convolutions appear once
    # (never without the image, whose input the graphs then drop; the runtime feeds each graph what it takes).
    convolutions = sum(node.op_type == "Conv" for name in result.files if name.endswith(".onnx")
                       for node in onnx.load(str(result.path / name)).graph.node)
    assert convolutions == (TINY["image_levels"] if settings.get("use_image", True) else 0)


def test_bundle_manifest_records_the_layout_and_provenance(bundle, checkpoint):
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["policy_id"] == "tiny_flow" and manifest["policy_type"] == "flow"
    assert manifest["token_layout"] == {"token_dim": 20, "max_tokens": 6, "frame_mode": "camera_frame",
                                        "dual_hand": False, "hand_side": "right"}
    assert (manifest["horizon"], manifest["action_dim"], manifest["arm"]) == (8, 10, "right")
    assert manifest["dt"] == pytest.approx(1 / 30) and manifest["integration_steps"] == 5
    assert manifest["onnx"] == {"layout": "single", "opset": 17, "files": {"policy": "policy.onnx"}}
    assert manifest["source"] == {"checkpoint": str(checkpoint), "training_step": 7, "ema": True}
    assert NormStats.load(bundle / "dataset_stats.json").extra == {"frames": 12}


def test_runtime_predicts_a_decoded_chunk_with_either_backend(bundle):
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    tokens = np.zeros((6, 20), np.float32)
    tokens[0, 0], tokens[0, 1:4] = 2, [0.1, -0.3, 0.5]
    tokens[1, 0] = 3
    mask = np.array([True, True, False, False, False, False])
    noise = np.random.default_rng(1).standard_normal((8, 10)).astype(np.float32)
    ort_out = PolicyRuntime(bundle, backend="onnxruntime", threads=1).predict(image, tokens, mask, noise)
    torch_out = PolicyRuntime(bundle, backend="torch", threads=1).predict(image, tokens, mask, noise)
    assert np.abs(ort_out.actions - torch_out.actions).max() <= 1e-4
    T, grasp = decode_actions(ort_out.actions, STATS)
    np.testing.assert_allclose(ort_out.T_ref, T)
    np.testing.assert_allclose(ort_out.grasp, grasp)
    assert ort_out.T_ref.shape == (8, 4, 4) and ort_out.grasp.shape == (8,) and 0 <= ort_out.done_prob <= 1
    # Without given noise, each runtime draws from its own seeded generator.
    a = PolicyRuntime(bundle, seed=3).predict(image, tokens, mask)
    b = PolicyRuntime(bundle, seed=3).predict(image, tokens, mask)
    np.testing.assert_array_equal(a.actions, b.actions)
    with pytest.raises(ValueError, match=r"tokens \(8, 20\).*takes \(6, 20\)"):
        PolicyRuntime(bundle).predict(image, np.zeros((8, 20)), np.zeros(8, bool))
    tokens[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PolicyRuntime(bundle).predict(image, tokens, mask)


def test_a_bundle_for_other_tokens_is_refused_with_both_shapes(bundle):
    dual = TokenLayout(29, 6, "camera_frame", True, "right")
    with pytest.raises(BundleError, match=r"\(6, 20\) vs \(6, 29\)"):
        PolicyRuntime(bundle, expected_layout=dual)
    anchor = TokenLayout(20, 6, "anchor_frame", False, "right")
    with pytest.raises(BundleError, match="camera_frame.*anchor_frame"):
        PolicyRuntime(bundle, expected_layout=anchor)
    PolicyRuntime(bundle, expected_layout=TokenLayout(20, 6))


def test_a_bundle_of_another_action_size_is_refused_with_both_shapes(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "b")
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["action_dim"] = 12
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"outputs actions \(8, 12\), this runtime decodes \(8, 10\)"):
        PolicyRuntime(copy)


def test_graphs_or_weights_that_do_not_fit_the_manifest_are_refused(bundle, tmp_path):
    other = export_bundle(make_checkpoint(tmp_path / "dual.pt", dual_hand=True), tmp_path / "dual",
                          tolerance=None, progress=False).path
    mixed = shutil.copytree(bundle, tmp_path / "mixed")
    shutil.copy(other / "policy.onnx", mixed / "policy.onnx")
    with pytest.raises(BundleError, match=r"policy.onnx takes tokens \(6, 29\).*bundle.json says \(6, 20\)"):
        PolicyRuntime(mixed, backend="onnxruntime")
    shutil.copy(other / "policy.pt", mixed / "policy.pt")
    with pytest.raises(BundleError, match="policy.pt is for 6x29 tokens .*bundle.json says 6x20 tokens"):
        PolicyRuntime(mixed, backend="torch")


@pytest.mark.parametrize("missing", ["policy.onnx", "dataset_stats.json", "policy.pt", "bundle.json"])
def test_a_missing_file_is_named(bundle, tmp_path, missing):
    copy = shutil.copytree(bundle, tmp_path / "b")
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=str(copy / missing)):
        PolicyRuntime(copy)


def test_bad_manifest_values_are_named(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "b")
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["onnx"]["layout"] = "unrolled"
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="bundle.json: onnx: must be one of 'encoder_step', 'single', got 'unrolled'"):
        PolicyRuntime(copy)


def test_checkpoint_round_trip_and_errors(checkpoint, tmp_path):
    ckpt = load_checkpoint(checkpoint.parent)  # a run folder means its latest.pt
    assert ckpt.policy_type == "flow" and ckpt.training == {"step": 7} and ckpt.dt == pytest.approx(1 / 30)
    raw, ema = ckpt.build_policy(use_ema=False), ckpt.build_policy(use_ema=True)
    assert not torch.equal(raw.head.weight, ema.head.weight)
    torch.testing.assert_close(ema.head.weight, ckpt.ema_state_dict["head.weight"])
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable policy checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="token_dim 29 does not fit a single-hand ICT layout"):
        TokenLayout(29, 8)


def test_export_cli(checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "cli"), "--steps", "3",
                 "--no-progress"]) == 0
    assert "max abs difference" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "bundle.json").read_text())["integration_steps"] == 3
    assert check_parity(tmp_path / "cli") <= 1e-4
    assert main(["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "notes"), "--no-progress"]) == 1
    assert "is not a policy bundle" in capsys.readouterr().err and (tmp_path / "notes" / "keep.txt").exists()
