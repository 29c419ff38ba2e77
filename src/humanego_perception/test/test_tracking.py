"""humanego_perception.tracking: LK on synthetic translating patterns, CoTracker ONNX on small models built here."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from humanego_perception.onnx_model import OnnxModelError
from humanego_perception.tracking import (
    CoTrackerConfig,
    CoTrackerOnnx,
    LucasKanadeConfig,
    LucasKanadeTracker,
    TrackingError,
)

H, W = 120, 160


def textured(seed=0):
    """A smooth random texture (blurred noise) with corners everywhere, larger than the frames."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(H + 80, W + 80)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def translated(base, dx, dy):
    """The texture shifted by a sub-pixel (dx, dy) (bilinear), cropped to H x W."""
    import cv2

    M = np.float32([[1, 0, dx - 40], [0, 1, dy - 40]])
    return np.clip(cv2.warpAffine(base, M, (W, H), flags=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("reference", ["query", "previous"])
def test_lk_follows_a_translating_pattern_within_0_2_px(reference):
    base = textured()
    motion = np.array([[0.7 * t, -0.45 * t] for t in range(12)])
    frames = [translated(base, dx, dy) for dx, dy in motion]
    query = 4
    grid = np.stack(np.meshgrid(np.arange(40, 121, 20), np.arange(30, 91, 20)), -1).reshape(-1, 2).astype(float)
    tracks, visible = LucasKanadeTracker(LucasKanadeConfig(reference=reference)).track(frames, query, grid)
    expected = grid[None] + (motion - motion[query])[:, None]
    assert visible.all()
    assert np.abs(tracks - expected).max() < 0.2


def test_lk_loses_points_that_leave_the_image_or_the_mask():
    base = textured(1)
    frames = [translated(base, 4.0 * t, 0.0) for t in range(8)]
    points = np.array([[150.0, 60.0], [10.0, 60.0], [80.0, 60.0]])  # the first walks out on the right
    masks = [np.ones((H, W), bool) for _ in frames]
    for t in range(4, 8):
        masks[t][:, 60:] = False  # the third is hidden from frame 4 on (an occluder)
    tracks, visible = LucasKanadeTracker(LucasKanadeConfig(mask_margin_px=0)).track(frames, 0, points, masks)
    assert visible[:2, 0].all() and not visible[3:, 0].any()
    assert visible[:, 1].all()
    assert visible[:4, 2].all() and not visible[4:, 2].any()
    assert np.all(np.isfinite(tracks))


def test_lk_query_mode_finds_a_point_again_after_an_occlusion():
    base = textured(2)
    frames = [translated(base, 1.5 * t, 0.5 * t) for t in range(10)]
    points = np.array([[80.0, 60.0], [50.0, 40.0]])
    masks = [np.ones((H, W), bool) for _ in frames]
    for t in (3, 4):
        masks[t][40:80, 70:110] = False  # point 0 is behind an occluder in frames 3 and 4
    config = LucasKanadeConfig(mask_margin_px=0, reference="query")
    tracks, visible = LucasKanadeTracker(config).track(frames, 0, points, masks)
    assert visible[[0, 1, 2, 5, 6, 7, 8, 9], 0].all() and not visible[[3, 4], 0].any()
    np.testing.assert_allclose(tracks[9, 0], [80.0 + 13.5, 60.0 + 4.5], atol=0.2)


def test_lk_forward_backward_check_drops_points_on_flat_areas():
    flat = np.full((H, W), 128, np.uint8)
    tracks, visible = LucasKanadeTracker().track([flat, flat, flat], 1, [[80.0, 60.0]])
    assert visible[1, 0] and not visible[0, 0] and not visible[2, 0]


@pytest.mark.parametrize("call, match", [
    (lambda t: t.track([], 0, [[1.0, 1.0]]), "no frames"),
    (lambda t: t.track([np.zeros((H, W), np.uint8)], 3, [[1.0, 1.0]]), "query_frame"),
    (lambda t: t.track([np.zeros((H, W), np.uint8)], 0, [[np.nan, 1.0]]), "finite"),
    (lambda t: t.track([np.zeros((H, W), np.uint8), np.zeros((H + 1, W), np.uint8)], 0, [[1.0, 1.0]]), "frame 1"),
])
def test_lk_bad_input(call, match):
    with pytest.raises(TrackingError, match=match):
        call(LucasKanadeTracker())


# ----- CoTracker ONNX -----
def cotracker_like_model(path, T="T", size=(32, 48), shift=(2.0, 1.0), wrong_output=False):
    """A model with CoTracker's signature: tracks[t] = query xy + t * shift (its own pixels), visibility 0.9.

    Built from ONNX ops only, so the test checks the wrapper's windows, scaling and reading of the outputs.
    """
    h, w = size
    video = helper.make_tensor_value_info("video", TensorProto.FLOAT, [1, T, 3, h, w])
    queries = helper.make_tensor_value_info("queries", TensorProto.FLOAT, [1, "N", 3])
    tracks = helper.make_tensor_value_info("tracks", TensorProto.FLOAT, [1, T, "N", 2])
    visibility = helper.make_tensor_value_info("visibility" if not wrong_output else "vis", TensorProto.FLOAT,
                                               [1, T, "N"])
    nodes = [
        # frame index 0..T-1 from the video's shape
        helper.make_node("Shape", ["video"], ["vshape"]),
        helper.make_node("Gather", ["vshape", "one"], ["t_count"], axis=0),
        helper.make_node("Cast", ["t_count"], ["t_count_f"], to=TensorProto.FLOAT),
        helper.make_node("Range", ["zero_f", "t_count_f", "one_f"], ["steps"]),
        helper.make_node("Unsqueeze", ["steps", "axes_1"], ["steps_col"]),  # [T, 1]
        helper.make_node("Mul", ["steps_col", "shift"], ["offsets"]),  # [T, 2]
        helper.make_node("Unsqueeze", ["offsets", "axes_1"], ["offsets_3"]),  # [T, 1, 2]
        helper.make_node("Slice", ["queries", "start_xy", "end_xy", "axes_2"], ["xy"]),  # [1, N, 2]
        helper.make_node("Add", ["xy", "offsets_3"], ["moved"]),  # [T, N, 2]
        helper.make_node("Unsqueeze", ["moved", "axes_0"], ["tracks"]),
        helper.make_node("ReduceSum", ["moved", "axes_2"], ["sum_xy"], keepdims=0),  # [T, N]
        helper.make_node("Mul", ["sum_xy", "zero_f"], ["zeros"]),
        helper.make_node("Add", ["zeros", "vis_value"], ["vis_tn"]),
        helper.make_node("Unsqueeze", ["vis_tn", "axes_0"], ["visibility" if not wrong_output else "vis"]),
    ]
    inits = [
        helper.make_tensor("one", TensorProto.INT64, [], [1]),
        helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one_f", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("axes_0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("axes_1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axes_2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("start_xy", TensorProto.INT64, [1], [1]),
        helper.make_tensor("end_xy", TensorProto.INT64, [1], [3]),
        helper.make_tensor("shift", TensorProto.FLOAT, [1, 2], list(shift)),
        helper.make_tensor("vis_value", TensorProto.FLOAT, [], [0.9]),
    ]
    graph = helper.make_graph(nodes, "cotracker_like", [video, queries], [tracks, visibility], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("T", ["T", 4])
def test_cotracker_onnx_windows_and_scaling(tmp_path, T):
    path = cotracker_like_model(tmp_path / "cotracker.onnx", T=T)
    tracker = CoTrackerOnnx(CoTrackerConfig(model_path=str(path)))
    frames = [np.zeros((H, W), np.uint8) for _ in range(11)]
    points = np.array([[40.0, 30.0], [100.0, 60.0]])
    query = 3
    tracks, visible = tracker.track(frames, query, points)
    # The model moves points by (2, 1) of its pixels per frame forward in time; frames are scaled by
    # W/48 = 10/3 and H/32 = 15/4 to the model. Backward (reversed video) the same shift applies per step.
    per_frame = np.array([2.0 * W / 48, 1.0 * H / 32])
    for t in range(11):
        expected = points + abs(t - query) * per_frame
        inside = (expected[:, 0] <= W - 1) & (expected[:, 1] <= H - 1)
        np.testing.assert_allclose(tracks[t][inside], expected[inside], atol=1e-3)
        assert visible[t].tolist() == inside.tolist()


def test_cotracker_onnx_with_the_wrong_signature_says_so(tmp_path):
    path = cotracker_like_model(tmp_path / "other.onnx", wrong_output=True)
    with pytest.raises(OnnxModelError, match="visibility"):
        CoTrackerOnnx(CoTrackerConfig(model_path=str(path)))
    with pytest.raises(OnnxModelError, match="does not exist"):
        CoTrackerOnnx(CoTrackerConfig(model_path=str(tmp_path / "missing.onnx")))
