"""The kinematic demonstrator: hand skeleton conventions, and demonstrations checked against the scene."""

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_core import hand as lm
from humanego_sim import human, tasks, world

ARIA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "aria"
BONES = [(lm.WRIST, lm.INDEX_PROXIMAL), (lm.INDEX_PROXIMAL, lm.INDEX_INTERMEDIATE),
         (lm.INDEX_DISTAL, lm.INDEX_FINGERTIP),
         (lm.THUMB_INTERMEDIATE, lm.THUMB_DISTAL), (lm.THUMB_DISTAL, lm.THUMB_FINGERTIP),
         (lm.PINKY_PROXIMAL, lm.PINKY_INTERMEDIATE), (lm.MIDDLE_DISTAL, lm.MIDDLE_FINGERTIP)]


def test_skeleton_has_fixed_bones_and_reaches_the_requested_aperture():
    reference = human.hand_landmarks(0.05)
    for aperture in np.linspace(0.0, 0.08, 9):
        L = human.hand_landmarks(aperture)
        assert lm.pinch_distance(L) == pytest.approx(aperture, abs=1.5e-3)
        np.testing.assert_allclose(L[lm.WRIST], 0.0)
        for a, b in BONES:
            assert np.linalg.norm(L[a] - L[b]) == pytest.approx(np.linalg.norm(reference[a] - reference[b]), abs=1e-9)
    wide = human.hand_landmarks(0.2)
    assert lm.pinch_distance(wide) < 0.2  # the thumb stops where it can reach, and says so


def test_wrist_frame_convention_matches_real_mps_right_hands():
    """Fingers along -x, palm facing -y, thumb towards +z in the wrist frame, as in real MPS output."""
    mps = pytest.importorskip("projectaria_tools.core.mps")
    path = ARIA / "mps_sample" / "hand_tracking" / "hand_tracking_results_v2.csv"
    if not path.is_file():
        pytest.skip(f"real MPS sample not found at {path}")
    ours = human.hand_landmarks(0.05)
    checked = 0
    for result in mps.hand_tracking.read_hand_tracking_results(str(path)):
        right = result.right_hand
        if right is None:
            continue
        T = right.transform_device_wrist.to_matrix()
        real = geometry.transform_points(geometry.invert(T), np.array(right.landmark_positions_device))
        for idx in (lm.MIDDLE_PROXIMAL, lm.PINKY_PROXIMAL, lm.INDEX_PROXIMAL, lm.THUMB_FINGERTIP):
            assert np.sign(real[idx][0]) == np.sign(ours[idx][0]) == -1  # towards the fingers
        assert np.sign(real[lm.THUMB_FINGERTIP][2]) == np.sign(ours[lm.THUMB_FINGERTIP][2]) == 1
        assert np.sign(real[lm.PINKY_PROXIMAL][2]) == np.sign(ours[lm.PINKY_PROXIMAL][2]) == -1
        palm, _ = human.hand_normals()
        real_palm = T[:3, :3].T @ np.array(right.wrist_and_palm_normal_device.palm_normal_device)
        assert np.dot(palm, real_palm) > 0.95
        # Same proportions as the hand model MPS fits: knuckles within 1.5 cm.
        np.testing.assert_allclose(ours[lm.MIDDLE_PROXIMAL], real[lm.MIDDLE_PROXIMAL], atol=0.015)
        checked += 1
    assert checked > 0


def box_signed_distance(points, size):
    half = np.asarray(size) / 2
    q = np.abs(points - [0, 0, half[2]]) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0)


@pytest.fixture(scope="module")
def world_config():
    return world.load_world_config()


@pytest.mark.parametrize("task_name", ["serve_bread", "put_in_bowl", "push_box"])
def test_demonstrations_succeed_and_respect_the_scene(task_name, world_config):
    task = tasks.load_task(task_name)
    cfg = human.HumanConfig()
    scene = world.World(task, world_config)
    table = world_config.table.height
    spec = task.objects[task.manipulated]
    bone_pairs = [(a, b) for _, a, b, _ in human._BONES if a is not None]
    for seed in range(4):
        scene.reset(seed=seed)
        initial = {n: scene.object_pose(n) for n in task.objects}
        demo = human.Demonstration(task, cfg, table, initial, np.random.default_rng(seed))
        frames = [demo.frame(float(t)) for t in demo.frame_times()]
        assert 3.0 < demo.duration < 15.0
        previous = None
        for f in frames:
            points = np.concatenate([np.linspace(f.landmarks[a], f.landmarks[b], 6) for a, b in bone_pairs])
            assert points[:, 2].min() - human.FINGER_RADIUS > table, f"seed {seed} {f.phase}: finger in the table"
            local = geometry.transform_points(geometry.invert(f.objects[task.manipulated]), points)
            clearance = box_signed_distance(local, spec.size).min() - human.FINGER_RADIUS
            assert clearance > -0.0025, f"seed {seed} {f.phase}: finger {clearance * 1000:.1f} mm inside the object"
            if previous is not None:
                # Human hands move smoothly: under 2.5 m/s, no jumps between frames.
                step = np.linalg.norm(f.T_world_pinch[:3, 3] - previous.T_world_pinch[:3, 3])
                assert step * cfg.fps < 2.5
            previous = f
        # Objects move only while held or pushed, and a held object keeps its pose in the pinch.
        moving = {"lift", "carry", "place", "hesitate", "push"}
        carried = [f for f in frames if f.grasped and f.phase in ("lift", "carry", "place")]
        if task.kind == "pick_place":
            assert carried
            rel = [geometry.invert(f.T_world_pinch) @ f.objects[task.manipulated] for f in carried]
            np.testing.assert_allclose(rel, [rel[0]] * len(rel), atol=1e-9)
            assert max(f.objects[task.manipulated][2, 3] for f in carried) > table + 0.05  # really lifted
        for a, b in zip(frames, frames[1:], strict=False):
            if a.phase not in moving and b.phase not in moving:
                np.testing.assert_allclose(a.objects[task.manipulated][:3, 3], b.objects[task.manipulated][:3, 3],
                                           atol=1e-9, err_msg=f"object moved during {b.phase}")
        scene.set_object_pose(task.manipulated, frames[-1].objects[task.manipulated])
        scene.forward()
        assert scene.check_success().success, f"{task_name} seed {seed}: {scene.check_success()}"
    scene.close()


def test_head_camera_really_moves_and_demos_are_deterministic(world_config):
    task = tasks.load_task("serve_bread")
    scene = world.World(task, world_config)
    scene.reset(seed=3)
    initial = {n: scene.object_pose(n) for n in task.objects}
    cfg = human.HumanConfig()
    a = human.Demonstration(task, cfg, world_config.table.height, initial, np.random.default_rng(3))
    b = human.Demonstration(task, cfg, world_config.table.height, initial, np.random.default_rng(3))
    times = a.frame_times()
    cams = np.stack([a.frame(float(t)).T_world_rgb for t in times])
    np.testing.assert_array_equal(cams, np.stack([b.frame(float(t)).T_world_rgb for t in times]))
    # Mounted like the real sensor: image x points down in the world (see SENSOR_FROM_UPRIGHT).
    assert np.all(cams[:, 2, 0] < -0.5)
    translation = np.ptp(cams[:, :3, 3], axis=0)
    assert np.linalg.norm(translation) > 0.03
    angles = Rotation.from_matrix(np.einsum("ji,njk->nik", cams[0, :3, :3], cams[:, :3, :3])).magnitude()
    assert np.degrees(angles.max()) > 8.0
    c = human.Demonstration(task, cfg, world_config.table.height, initial, np.random.default_rng(4))
    assert c.duration != a.duration
    scene.close()


def test_demos_start_and_end_at_the_configured_rest_pose(world_config):
    task = tasks.load_task("serve_bread")
    scene = world.World(task, world_config)
    scene.reset(seed=5)
    initial = {n: scene.object_pose(n) for n in task.objects}
    scene.close()
    cfg = human.HumanConfig(rest_hand=[0.30, -0.10, 0.98], rest_across=[0.0, -1.0], rest_pitch=1.0)
    rest = human.rest_pose(cfg)
    # Pinch x across (horizontal, along -y here), y forward and 1 rad below horizontal.
    np.testing.assert_allclose(rest[:3, 0], [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(rest[:3, 1], [np.cos(1.0), 0.0, -np.sin(1.0)], atol=1e-12)
    demo = human.Demonstration(task, cfg, world_config.table.height, initial, np.random.default_rng(5))
    for t in demo.frame_times()[[0, -1]]:
        T, _, _, _ = demo.grasp_pose(float(t))
        np.testing.assert_allclose(T[:3, :3], rest[:3, :3], atol=1e-9)
        assert np.linalg.norm(T[:3, 3] - rest[:3, 3]) < 0.08  # 1.5 cm per axis of scatter


@pytest.mark.parametrize("bad", [{"rest_across": [0.0, 0.0]}, {"rest_across": [1.0, 0.0, 0.0]},
                                 {"rest_hand": [0.3, float("nan"), 1.0]}])
def test_bad_rest_pose_config_is_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        human.HumanConfig(**bad)
