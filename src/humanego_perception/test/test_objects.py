"""humanego_perception.objects on a small synthetic serve_bread recording (ground truth from the simulator)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from humanego_core import geometry
from humanego_perception.object_eval import position_errors, recording_inputs
from humanego_perception.objects import (
    NO_MASK,
    NO_SUPPORT,
    ColourShapeDetector,
    GroundTruthMasks,
    ObjectPrompt,
    ObjectStateConfig,
    ObjectStateError,
    OnnxDetector,
    OnnxDetectorConfig,
    estimate_object_states,
    prompts_from_task,
)
from humanego_perception.onnx_model import OnnxModelError
from humanego_sim.aria_recording import Recording
from humanego_sim.generate_demos import generate
from humanego_sim.tasks import load_task

# Recorded and rectified size: the pipeline's (config/preprocess.yaml). At 320 px the bread is ~15 px long and seed
# 0 views it along its length, where its outline only measures length x sin(elevation) + height x cos(elevation):
# its fitted size goes from (81, 51, 58) mm at 480 px to (71, 54, 70) mm and its position error from 8 to 14 mm.
SIZE = 480


@pytest.fixture(scope="session")
def serve_bread(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_bread")
    results = generate("serve_bread", 1, root, seed=0, width=SIZE, height=SIZE, progress=False)
    recording = Recording.open(root / results[0].name)
    return recording_inputs(recording, SIZE, SIZE)


@pytest.fixture(scope="session")
def prompts():
    return prompts_from_task(load_task("serve_bread"))


def test_prompts_from_the_task_config(prompts):
    assert [(p.name, p.shape, p.dynamic) for p in prompts] == [("bread", "box", True), ("plate", "cylinder", False)]
    assert prompts[0].rgba == [0.80, 0.55, 0.25, 1.0]
    # A bowl's and a marker's silhouettes are a cylinder's.
    assert [p.shape for p in prompts_from_task(load_task("put_in_bowl"))] == ["box", "cylinder"]


@pytest.fixture(scope="session")
def detected(serve_bread, prompts):
    detector = ColourShapeDetector()
    return [detector.detect(frame, prompts) for frame in serve_bread.frames]


def test_colour_shape_detector_iou_against_the_simulator_masks(serve_bread, prompts, detected):
    # Measured on seed 0 at 480x480: median IoU bread 0.84, plate 0.96 (printed); bounds with a margin. Frames
    # where an object is (almost) hidden are left out: the median is over frames where it shows at least 40 px.
    ious = {p.name: [] for p in prompts}
    for frame, masks, truth in zip(serve_bread.frames, detected, serve_bread.label_masks, strict=True):
        for p in prompts:
            assert masks[p.name].shape == frame.shape[:2] and masks[p.name].dtype == bool
            if truth[p.name].sum() >= 40:
                union = (masks[p.name] | truth[p.name]).sum()
                ious[p.name].append((masks[p.name] & truth[p.name]).sum() / union)
    print({name: round(float(np.median(v)), 3) for name, v in ious.items()})
    assert np.median(ious["bread"]) > 0.7
    assert np.median(ious["plate"]) > 0.85


def test_detector_does_not_take_the_arm_or_table_for_the_bread(serve_bread, detected):
    # Where the bread is hidden entirely, nothing the detector returns may lie on the arm.
    arm_hits = sum(int(masks["bread"].any()) for masks, truth in zip(detected, serve_bread.label_masks, strict=True)
                   if not truth["bread"].any())
    assert arm_hits == 0


@pytest.fixture(scope="session")
def estimated(serve_bread, prompts, detected):
    inputs = serve_bread
    return estimate_object_states(inputs.frames, inputs.camera, inputs.T_world_camera, detected, prompts,
                                  inputs.T_world_hand, inputs.hand_valid, inputs.grasp, ObjectStateConfig())


def test_object_poses_against_the_simulator(serve_bread, estimated):
    # Default detector; the truth is the simulator's body pose (base centre, z up, x along the bread's length).
    # Measured on this recording (seed 0, 480x480; printed): bread median 7.9 mm, p90 8.4 mm, yaw 1.2 deg, size
    # off by (-19, 1, 18) mm (seen along its length, see SIZE); plate 9.0 mm (it stands on the support height
    # the bread's fit gives, 6 mm low here). Seeds 0-5: benchmarks/object_state.py. Bounds with a margin.
    for name, bound in (("bread", 0.012), ("plate", 0.012)):
        track = estimated[name]
        assert track.valid.all(), f"{name}: {set(track.reason)}"
        errors = position_errors(track, serve_bread)
        print(f"{name}: position median {1e3 * np.median(errors.position_m):.1f} mm, p90 "
              f"{1e3 * np.percentile(errors.position_m, 90):.1f} mm, size error "
              f"{np.round(1e3 * errors.size_error_m)} mm"
              + (f", yaw median {np.median(errors.yaw_deg):.1f} deg" if len(errors.yaw_deg) else ""))
        assert np.median(errors.position_m) < bound, f"{name}: median {np.median(errors.position_m):.3f} m"
    assert np.median(position_errors(estimated["bread"], serve_bread).yaw_deg) < 5.0
    bread = estimated["bread"]
    assert bread.is_dynamic and not estimated["plate"].is_dynamic
    # The bread moves with the hand while grasped, the plate never moves.
    assert np.linalg.norm(bread.T_world_obj[-1, :3, 3] - bread.T_world_obj[0, :3, 3]) > 0.2
    plate = estimated["plate"].T_world_obj
    assert np.abs(plate - plate[0]).max() < 1e-12


def test_track_contents_are_consistent(estimated):
    for track, points in ((estimated["bread"], 8), (estimated["plate"], 16)):
        F = len(track.valid)
        assert track.T_world_obj.shape == (F, 4, 4) and np.all(np.isfinite(track.T_world_obj))
        geometry.check_transform(track.T_world_obj)
        assert track.keypoints_world.shape == (points, 3)  # box corners / two rims of 8
        assert track.keypoints_uv.shape == (F, points, 2) and track.keypoints_visible.shape == (F, points)
        assert track.keypoints_visible[track.valid].any() and not track.keypoints_visible[~track.valid].any()
        assert np.all(track.reason[track.valid] == "") and np.all(track.reason[~track.valid] != "")
        assert np.isfinite(track.reprojection_error_px) and track.reprojection_error_px < 1.5
        np.testing.assert_allclose(track.T_world_obj[track.valid][0, :3, 2], [0, 0, 1], atol=1e-12)  # z up


def test_a_static_object_needs_a_support(serve_bread, prompts, detected):
    # Without a grasped object there is no support height: the plate is not located, and says why.
    inputs = serve_bread
    tracks = estimate_object_states(inputs.frames, inputs.camera, inputs.T_world_camera, detected, prompts[1:],
                                    inputs.T_world_hand, inputs.hand_valid, inputs.grasp)
    plate = tracks["plate"]
    assert not plate.valid.any() and set(plate.reason) == {NO_SUPPORT}
    np.testing.assert_array_equal(plate.T_world_obj, np.broadcast_to(np.eye(4), plate.T_world_obj.shape))


def test_without_grasps_the_bread_is_not_located(serve_bread, prompts, detected):
    inputs = serve_bread
    tracks = estimate_object_states(inputs.frames, inputs.camera, inputs.T_world_camera, detected, prompts,
                                    inputs.T_world_hand, inputs.hand_valid, np.zeros_like(inputs.grasp))
    # Without a grasp there is no pinch point, and without one no support height: neither object has a depth cue.
    assert all(set(track.reason) == {NO_SUPPORT} for track in tracks.values())


def test_empty_masks_give_reasons_and_no_nan(serve_bread, prompts):
    inputs = serve_bread
    F = len(inputs.frames)
    empty = [{"bread": np.zeros(inputs.frames[0].shape[:2], bool)} for _ in range(F)]
    tracks = estimate_object_states(inputs.frames, inputs.camera, inputs.T_world_camera, empty, prompts,
                                    inputs.T_world_hand, inputs.hand_valid, inputs.grasp)
    for track in tracks.values():
        assert not track.valid.any() and set(track.reason) == {NO_MASK}
        np.testing.assert_array_equal(track.T_world_obj, np.broadcast_to(np.eye(4), (F, 4, 4)))
        assert len(track.keypoints_world) == 0 and track.keypoints_uv.shape == (F, 0, 2)


def test_bad_inputs_are_named(serve_bread, prompts):
    inputs = serve_bread
    F = len(inputs.frames)
    args = [inputs.frames, inputs.camera, inputs.T_world_camera, inputs.label_masks, prompts, inputs.T_world_hand,
            inputs.hand_valid, inputs.grasp]
    with pytest.raises(ObjectStateError, match="masks"):
        estimate_object_states(*args[:3], inputs.label_masks[:-1], *args[4:])
    with pytest.raises(ObjectStateError, match="grasp"):
        estimate_object_states(*args[:7], np.zeros(F + 1))
    hand = inputs.T_world_hand.copy()
    hand[5] = np.nan
    valid = np.ones(F, bool)
    with pytest.raises(ObjectStateError, match="NaN"):
        estimate_object_states(*args[:5], hand, valid, inputs.grasp)
    with pytest.raises(ValueError, match="shape"):
        ObjectPrompt("x", [1.0, 0.0, 0.0], "sphere")


def test_ground_truth_masks_wrap_a_lookup(prompts):
    gt = GroundTruthMasks(lambda i, name: np.full((4, 5), name == "bread" and i == 2))
    out = gt.detect(2, prompts)
    assert out["bread"].all() and not out["plate"].any()


# ----- ONNX detector -----
def segmentation_model(path, size=(16, 24), n=3, images_name="images"):
    """A model with the detector's signature: masks = channel means thresholded per instance, fixed scores and
    labels (0, 1, 0), so instance 1 (class 1) is the red channel > 0.5 and instances 0/2 (class 0) blue/green."""
    h, w = size
    images = helper.make_tensor_value_info(images_name, TensorProto.FLOAT, [1, 3, h, w])
    masks = helper.make_tensor_value_info("masks", TensorProto.FLOAT, [1, n, h, w])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, n])
    labels = helper.make_tensor_value_info("labels", TensorProto.INT64, [1, n])
    nodes = [
        helper.make_node("Gather", [images_name, "order"], ["channels"], axis=1),  # [1, n, h, w]: B, R, G
        helper.make_node("Sub", ["channels", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["masks"]),  # logits: > 0 where the channel > 0.5
        helper.make_node("Identity", ["score_values"], ["scores"]),
        helper.make_node("Identity", ["label_values"], ["labels"]),
    ]
    inits = [helper.make_tensor("order", TensorProto.INT64, [n], [2, 0, 1]),
             helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
             helper.make_tensor("gain", TensorProto.FLOAT, [], [10.0]),
             helper.make_tensor("score_values", TensorProto.FLOAT, [1, n], [0.9, 0.8, 0.2]),
             helper.make_tensor("label_values", TensorProto.INT64, [1, n], [0, 1, 0])]
    graph = helper.make_graph(nodes, "segmenter", [images], [masks, scores, labels], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_onnx_detector_picks_the_best_instance_of_each_class(tmp_path):
    path = segmentation_model(tmp_path / "seg.onnx")
    detector = OnnxDetector(OnnxDetectorConfig(model_path=str(path), class_names=["plate", "bread"]))
    image = np.zeros((48, 72, 3), np.uint8)
    image[10:30, 5:40, 0] = 255  # red: the bread (class 1)
    image[30:45, 40:70, 2] = 255  # blue: the plate (class 0, instance 0 scores 0.9)
    image[0:8, 0:8, 1] = 255  # green: class 0 too, but scores 0.2 (below the threshold)
    masks = detector.detect(image, [ObjectPrompt("bread", [1, 0, 0]), ObjectPrompt("plate", [0, 0, 1])])
    assert masks["bread"].shape == (48, 72)
    expected_bread = np.zeros((48, 72), bool)
    expected_bread[10:30, 5:40] = True
    expected_plate = np.zeros((48, 72), bool)
    expected_plate[30:45, 40:70] = True
    for got, want in ((masks["bread"], expected_bread), (masks["plate"], expected_plate)):
        assert (got & want).sum() / (got | want).sum() > 0.8  # resized through the model's 16x24
    with pytest.raises(ObjectStateError, match="cup"):
        detector.detect(image, [ObjectPrompt("cup", [1, 1, 1])])


def test_onnx_detector_with_the_wrong_signature_says_so(tmp_path):
    path = segmentation_model(tmp_path / "other.onnx", images_name="pixel_values")
    with pytest.raises(OnnxModelError, match="images"):
        OnnxDetector(OnnxDetectorConfig(model_path=str(path), class_names=["plate"]))
    with pytest.raises(OnnxModelError, match="does not exist"):
        OnnxDetector(OnnxDetectorConfig(model_path=str(tmp_path / "none.onnx"), class_names=["plate"]))
