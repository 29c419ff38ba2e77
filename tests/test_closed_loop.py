"""Closed-loop episodes (humanego_bringup.episodes / episode_runner): the bookkeeping against hand-computed values
and OpenCV, and (slow) the real graph run closed loop with the replay policy: the simulated arm's ee moves toward
the bread, measured from the simulator's ground truth (TF and task_state), while the episode runner measures
latency per stage, writes the video and the bag."""

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from scipy.spatial.transform import Rotation

from humanego_bringup import episodes
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.transform_tree import TransformLookupError

NS_PER_S = 1_000_000_000


# --- SimClockMap ---------------------------------------------------------------------------------------------------
def half_speed_clock() -> episodes.SimClockMap:
    """A simulator at real-time factor 0.5: sim = 10 s + 0.5 (wall - 100 s), sampled every 10 ms of sim time."""
    clock = episodes.SimClockMap()
    for k in range(200):
        sim_s = 10.0 + 0.01 * k
        clock.observe(100.0 + (sim_s - 10.0) / 0.5, round(sim_s * NS_PER_S))
    return clock


def test_wall_time_of_a_stamp_is_interpolated_between_clock_samples():
    clock = half_speed_clock()
    stamps = np.array([10.0, 10.005, 10.5, 11.99]) * NS_PER_S
    np.testing.assert_allclose(clock.wall_of(stamps), [100.0, 100.01, 101.0, 103.98], atol=1e-9)
    assert np.isnan(clock.wall_of([9.0 * NS_PER_S, 12.5 * NS_PER_S])).all()  # outside the samples: unknown
    assert clock.sim_of(101.0) == round(10.5 * NS_PER_S)
    assert clock.sim_of(99.0) is None and clock.sim_of(1e6) == clock.latest_sim_ns
    assert clock.real_time_factor(round(10.2 * NS_PER_S), round(11.2 * NS_PER_S)) == pytest.approx(0.5)


def test_a_clock_going_back_starts_a_new_history():
    clock = half_speed_clock()
    clock.observe(200.0, 5 * NS_PER_S)
    clock.observe(200.0, 5 * NS_PER_S)  # repeated value: ignored
    clock.observe(201.0, 6 * NS_PER_S)
    assert len(clock) == 2
    np.testing.assert_allclose(clock.wall_of([5.5 * NS_PER_S]), [200.5])


# --- stage latencies -------------------------------------------------------------------------------------------
def test_stage_latencies_from_stamps_and_arrivals():
    clock = half_speed_clock()
    times = episodes.StageTimes()
    s1, s2 = round(10.1 * NS_PER_S), round(10.2 * NS_PER_S)  # reached at wall 100.2 and 100.4
    for stamp, wall0 in ((s1, 100.2), (s2, 100.4)):
        times.arrived("camera", stamp, wall0 + 0.010)
        times.arrived("clean_view", stamp, wall0 + 0.030)
        times.arrived("ict", stamp, wall0 + 0.050)
        times.arrived("camera", stamp, wall0 + 0.5)  # a second arrival of the same stamp: the first one counts
    times.arrived("chunk", s1, 100.2 + 0.150)          # after ict (the later input) by 100 ms
    times.arrived("joint_chunk", s1, 100.2 + 0.350)
    times.arrived("chunk", round(10.3 * NS_PER_S), 100.9)  # no inputs of this stamp: a total, no hop
    lat = times.latencies_ms(clock, s1, round(10.35 * NS_PER_S))
    np.testing.assert_allclose(lat["camera"]["total"], [10.0, 10.0], atol=1e-6)
    np.testing.assert_allclose(lat["clean_view"]["hop"], [20.0, 20.0], atol=1e-6)
    np.testing.assert_allclose(lat["ict"]["total"], [50.0, 50.0], atol=1e-6)
    np.testing.assert_allclose(np.sort(lat["chunk"]["total"]), [150.0, 300.0], atol=1e-6)
    np.testing.assert_allclose(lat["chunk"]["hop"], [100.0], atol=1e-6)
    np.testing.assert_allclose(lat["joint_chunk"]["hop"], [200.0], atol=1e-6)
    # The window: only stamps from s2 on.
    assert lat["joint_chunk"]["total"].size == 1
    assert times.latencies_ms(clock, s2, s2 + 1)["joint_chunk"]["total"].size == 0
    summary = episodes.latency_summary(episodes.merge_latencies([lat, lat]))
    assert summary["camera"]["count"] == 4 and summary["camera"]["total_p50_ms"] == pytest.approx(10.0)
    assert np.isnan(summary["camera"]["hop_p50_ms"])  # the camera has no inputs
    assert "n/a" in episodes.format_latency(episodes.latency_summary(times.latencies_ms(clock, s2, s2 + 1)))


def test_header_stamp_read_from_the_serialized_message_matches_rclpy():
    from rclpy.serialization import serialize_message
    from trajectory_msgs.msg import JointTrajectory

    from humanego_interfaces.msg import ActionChunk
    from humanego_ros import conversions as conv

    stamp = 1_234 * NS_PER_S + 567_890_123
    image = conv.numpy_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8", stamp, "camera_optical_frame")
    chunk = ActionChunk(dt=0.1, arms=["right"])
    chunk.header.stamp = conv.ns_to_time(stamp)
    trajectory = JointTrajectory(joint_names=["a"])
    trajectory.header.stamp = conv.ns_to_time(stamp)
    for msg in (image, chunk, trajectory):
        assert episodes.header_stamp_ns(serialize_message(msg)) == stamp
    with pytest.raises(ValueError, match="not a CDR"):
        episodes.header_stamp_ns(b"\x07\x01\x00\x00")


def test_counter_delta_keeps_the_increases_of_the_chosen_counters():
    before = {"message": "holding: estop", "limited_velocity_limited": "5", "hold_estop": "1", "commands_sent": "9"}
    after = {"message": "holding: estop", "limited_velocity_limited": "12", "limited_step_limited": "3",
             "hold_estop": "2", "hold_stale_chunk": "1", "commands_sent": "90", "period_jitter_p50_ms": "0.1"}
    delta = episodes.counter_delta(before, after, episodes.INTERVENTION_PREFIXES, exclude=("hold_estop",))
    assert delta == {"hold_stale_chunk": 1, "limited_step_limited": 3, "limited_velocity_limited": 7}
    assert episodes.add_counts({"hold_stale_chunk": 2}, delta)["hold_stale_chunk"] == 3


def test_episode_table_and_success_rate():
    results = [episodes.EpisodeResult(3, True, 7.5, 12.0, goal_distance_m=0.01, real_time_factor=0.9,
                                      interventions={"limited_velocity_limited": 4, "hold_tracking_error": 1}),
               episodes.EpisodeResult(4, False, 20.0, 30.0, reason="time limit", goal_distance_m=0.2)]
    assert episodes.success_rate(results) == 0.5
    table = episodes.format_episodes(results)
    assert "tracking_error 1" in table and "time limit" in table and "20.0" in table
    assert json.loads(json.dumps(results[0].to_dict()))["seed"] == 3


def test_an_overloaded_machine_is_named_with_the_remedy():
    results = [episodes.EpisodeResult(s, True, 7.0, 7.0, real_time_factor=rtf) for s, rtf in ((0, 0.98), (1, 1.0))]
    assert episodes.overload_hint(results, 3.9, 2) is None
    hint = episodes.overload_hint(results, 9.8, 2)
    assert "load average 9.8 on 2 CPUs" in hint and "--param sim_robot.real_time_factor=0.5 " in hint
    assert episodes.overload_hint([], 9.8, 2) is None
    slowed = [episodes.EpisodeResult(0, True, 7.0, 14.0, real_time_factor=0.5)]
    assert "real_time_factor=0.25 " in episodes.overload_hint(slowed, 4.5, 2)


# --- drawing -----------------------------------------------------------------------------------------------------
def test_projection_matches_opencv():
    camera = CameraModel(LINEAR, [300.0, 310.0, 160.0, 120.0], 320, 240)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix()
    T[:3, 3] = [0.1, -0.2, 1.5]
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.3, 0.3, (20, 3))
    uv, front = episodes.project_points(points, T, camera)
    expected, _ = cv2.projectPoints(points, cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], camera.intrinsic_matrix(), None)
    assert front.all()
    np.testing.assert_allclose(uv, expected.reshape(-1, 2), atol=1e-9)
    behind = np.array([[0.0, 0.0, -3.0]])  # z = -1.5 in the camera
    assert not episodes.project_points(behind, T, camera)[1][0]


def test_draw_path_colours_the_pixels_along_the_path():
    camera = CameraModel(LINEAR, [100.0, 100.0, 50.0, 50.0], 101, 101)
    image = np.zeros((101, 101, 3), np.uint8)
    path = np.array([[-0.2, 0.0, 1.0], [0.2, 0.0, 1.0], [0.2, 0.0, -1.0]])  # last point behind the camera
    episodes.draw_path(image, path, np.eye(4), camera, (0, 255, 0), thickness=1)
    assert image[50, 35:66, 1].min() > 100  # the segment u = 30 .. 70 at v = 50
    assert image[:45, :, 1].max() == 0 and image[56:, :, 1].max() == 0


def test_replay_recordings_are_found_by_the_seed_of_their_scene(tmp_path):
    for name, seed, preprocessed in (("demo_0000", 7, True), ("demo_0001", 8, False), ("other", 9, True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.json").write_text(json.dumps({"seed": seed}))
        (tmp_path / name / "preprocess" / "all_data").mkdir(parents=True)
        if preprocessed:
            (tmp_path / name / "preprocess" / "report.json").write_text("{}")
    found, missing = episodes.replay_recordings(tmp_path, [7, 8, 9, 10])
    assert found == {7: tmp_path / "demo_0000", 9: tmp_path / "other"}
    assert missing == [8, 10]  # 8: preprocessing has not finished


def test_a_missed_start_names_what_did_not_arrive_after_the_reset():
    from types import SimpleNamespace

    from humanego_bringup.episode_runner import ClosedLoopRunner
    from humanego_interfaces.msg import TaskState

    reset_ns = 10_000_000_000
    state = TaskState(seed=4)
    state.header.stamp.sec = 11
    probe = SimpleNamespace(lock=threading.Lock(), chunk_stamps=[9_000_000_000], task_state=state,
                            joint_chunks=3, joint_chunk_stamp=10_200_000_000)
    assert ClosedLoopRunner._missing_after_reset(probe, reset_ns, 4) == (
        "no action_chunk stamped after the reset (1 received, newest stamped -1.0 s from it)")
    probe.chunk_stamps.append(10_500_000_000)
    assert ClosedLoopRunner._missing_after_reset(probe, reset_ns, 5) == (
        "no task_state of seed 5 after the reset (newest of seed 4, +1.0 s from it)")
    probe.joint_chunk_stamp = 9_500_000_000  # chunks of this episode reached the probe, none got through the IK
    assert ClosedLoopRunner._missing_after_reset(probe, reset_ns, 4) == (
        "no joint_chunk stamped after the reset (3 received, newest stamped -0.5 s from it)")
    probe.chunk_stamps.clear()
    probe.task_state = probe.joint_chunk_stamp = None
    probe.joint_chunks = 0
    assert ClosedLoopRunner._missing_after_reset(probe, reset_ns, 5) == (
        "no action_chunk stamped after the reset (0 received, none yet); no joint_chunk stamped after the reset "
        "(0 received, none yet); no task_state of seed 5 after the reset (none yet)")


def test_a_start_up_wait_gives_the_probe_a_new_participant_while_nothing_arrives(monkeypatch):
    from types import SimpleNamespace

    from humanego_bringup import episode_runner

    monkeypatch.setattr(episode_runner, "PROBE_RECONNECT_S", 0.3)
    lines = []
    runner = episode_runner.ClosedLoopRunner(episode_runner.RunConfig(policy="flow", seeds=[0]), log=lines.append)
    probe = SimpleNamespace(reconnections=0)
    probe.reconnect = lambda: setattr(probe, "reconnections", probe.reconnections + 1)
    graph = SimpleNamespace(poll=lambda: None)
    runner._wait_reconnecting(lambda: probe.reconnections == 2, "the clock", 10.0, graph, probe)
    assert probe.reconnections == 2 and len(runner.notes) == 2
    assert lines == ["  still waiting for the clock after 0 s: the probe reconnects"] * 2
    with pytest.raises(episode_runner.WaitTimeout, match="waited 1 s for the clock in vain"):
        runner._wait_reconnecting(lambda: False, "the clock", 1.0, graph, probe)
    assert probe.reconnections == 5  # after 0.3, 0.6 and 0.9 s


def test_a_part_of_the_graph_that_stays_silent_gets_the_graph_started_again(monkeypatch):
    from types import SimpleNamespace

    from humanego_bringup import episode_runner

    monkeypatch.setattr(episode_runner, "PROBE_RECONNECT_S", 0.2)
    runner = episode_runner.ClosedLoopRunner(episode_runner.RunConfig(policy="flow", seeds=[0], startup_timeout_s=1.5),
                                             log=lambda line: None)
    count = SimpleNamespace(get_publisher_count=lambda: 1)
    probe = SimpleNamespace(clock=[1, 2], reset_client=SimpleNamespace(service_is_ready=lambda: True),
                            controller_status=lambda: None, unmatched=lambda stages: [], reconnect=lambda: None,
                            clock_subscription=count, node=SimpleNamespace(count_publishers=lambda topic: 1))
    graph = SimpleNamespace(poll=lambda: None)
    # A controller that never reports: after the step's patience, the caller may start the graph again ...
    with pytest.raises(episode_runner.GraphNotReady, match="the trajectory controller on /diagnostics"):
        runner._wait_ready(graph, probe, patience_s=0.5)
    # ... and without patience (the second start) it is the start-up timeout's plain failure.
    with pytest.raises(episode_runner.WaitTimeout) as failed:
        runner._wait_ready(graph, probe)
    assert type(failed.value) is episode_runner.WaitTimeout
    # A graph whose parts all match, but where no joint chunk comes out (a reader in the pipeline that gets no
    # sample): started again too.
    probe.controller_status = lambda: {"message": "holding: estop"}
    probe.estop_pub = SimpleNamespace(get_subscription_count=lambda: 1)
    probe.joint_chunks = 0
    with pytest.raises(episode_runner.GraphNotReady, match="the first joint chunk"):
        runner._wait_ready(graph, probe, patience_s=0.5)


def test_the_probe_reconnects_keeping_what_it_recorded_and_forgets_a_restarted_graph(probe):
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    from humanego_bringup.episode_runner import GraphProbe
    from humanego_ros import qos

    source = probe("clock_source", {})
    publisher = source.node.create_publisher(Clock, "/clock", qos.CLOCK)
    graph_probe = GraphProbe("reconnect_test")
    sec = iter(range(1, 100000))

    def received(count: int) -> bool:
        publisher.publish(Clock(clock=Time(sec=next(sec))))
        return len(graph_probe.clock) >= count

    try:
        source.wait(lambda: received(2), "/clock at the probe")
        before, node = len(graph_probe.clock), graph_probe.node
        graph_probe.reconnect()
        assert graph_probe.node is not node and graph_probe.reconnections == 1
        assert len(graph_probe.clock) >= before  # kept (one more may have arrived before the old one closed)
        source.wait(lambda: received(before + 2), "/clock at the reconnected probe")
        # A graph started again starts its clock at zero: the old graph's samples must not map its times.
        graph_probe.forget_graph()
        assert len(graph_probe.clock) <= 1 and graph_probe.statuses() == {}
        source.wait(lambda: received(3), "/clock after forgetting the old graph")
    finally:
        graph_probe.close()


# --- the real graph, closed loop ---------------------------------------------------------------------------------
SEED = 3
REACH_S = 2.5


def write_reach_recording(root: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed recording (training_data.json schema) of a hand that moves, in the scene of ``seed``, from
    where the robot's gripper starts (its home pose through views.yaml's alignment) to 12 cm above the bread in
    ``REACH_S`` and stays. Returns the ee's start and target positions in the world."""
    from humanego_core import training_data
    from humanego_perception.views import load_views_config
    from humanego_sim.tasks import load_task
    from humanego_sim.world import World
    from humanego_training.image_io import write_image

    world = World(load_task("serve_bread"), robot="panda")
    try:
        world.reset(seed)
        T_ee0 = world.body_pose("ee")
        bread = world.object_pose("bread")[:3, 3]
    finally:
        world.close()
    T_ee_gripper = np.array(load_views_config().gripper.ee_to_gripper)
    target = bread + [0.0, 0.0, 0.12]
    (root / "metadata.json").parent.mkdir(parents=True)
    (root / "metadata.json").write_text(json.dumps({"seed": seed, "task": {"name": "serve_bread"}}))
    image = root / "preprocess" / "image.png"
    image.parent.mkdir(parents=True)
    write_image(image, np.zeros((8, 8, 3), np.uint8))
    (root / "preprocess" / "report.json").write_text("{}")
    fps, frames = 30.0, int(REACH_S * 30) + 15
    for i in range(frames):
        s = min(1.0, i / fps / REACH_S)
        s = s * s * (3 - 2 * s)  # smooth start and stop
        T_ee = T_ee0.copy()
        T_ee[:3, 3] = (1 - s) * T_ee0[:3, 3] + s * target
        folder = training_data.frame_folder(root, i)
        folder.mkdir(parents=True)
        record = {"metadata": {"idx": i, "ts": i / fps, "w": 8, "h": 8, "fps": fps,
                               "k": [[8.0, 0.0, 4.0], [0.0, 8.0, 4.0], [0.0, 0.0, 1.0]], "c2w": np.eye(4).tolist(),
                               "anchor_key": "obj0", "is_finished": i == frames - 1,
                               "world_transforms": {"cam0": np.eye(4).tolist(),
                                                    "virtual_static_anchor": np.eye(4).tolist()}},
                  "obs": {key: str(image.relative_to(root)) for key in training_data.IMAGE_KEYS},
                  "entities": {"hands": {"right": {"T_hand_to_world": (T_ee @ T_ee_gripper).tolist(), "grasp": 0.0}},
                               "objects": {"obj0": {"T_obj_to_world": np.eye(4).tolist(), "is_dynamic": False}}}}
        (folder / training_data.FILE_NAME).write_text(json.dumps(record))
    return T_ee0[:3, 3], target


@pytest.mark.slow
def test_replay_closes_the_loop_and_the_arm_moves_toward_the_bread(tmp_path, probe):
    from humanego_bringup.episode_runner import ClosedLoopRunner, RunConfig
    from humanego_interfaces.msg import TaskState
    from humanego_ros import conversions as conv
    from humanego_ros import qos
    from humanego_ros.tf_listener import TfListener

    start, target = write_reach_recording(tmp_path / "recordings" / "reach", SEED)
    ns = f"closed_loop_{id(tmp_path) % 100000}"
    # The recording starts where the arm stands: no lead-in is needed to get there.
    config = RunConfig(policy="replay", seeds=[SEED], recordings=tmp_path / "recordings", timeout_s=REACH_S + 3.0,
                       namespace=ns, out_dir=tmp_path / "run", bag=True, video=True, startup_timeout_s=150.0,
                       node_parameters={"policy": {"replay_lead_in_s": 0.0}})
    lines = []
    runner = ClosedLoopRunner(config, log=lines.append)
    outcome = {}

    def run():
        try:
            outcome["result"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    watcher = probe("closed_loop_watcher", {"task": (TaskState, f"/{ns}/task_state", qos.COMMAND)})
    tf = TfListener(watcher.node)
    ee = []  # (sim s, ee world position) in the scene of SEED, from the simulator's TF
    deadline = time.monotonic() + 900
    while thread.is_alive() and time.monotonic() < deadline:
        watcher.executor.spin_once(timeout_sec=0.05)
        states = watcher.got["task"]
        if states and states[-1].seed == SEED:
            stamp = conv.time_to_ns(states[-1].header.stamp)
            try:
                ee.append((stamp / NS_PER_S, tf.lookup("world", "ee", stamp)[:3, 3]))
            except TransformLookupError:
                pass
    thread.join(timeout=60)
    assert "error" not in outcome, f"{outcome.get('error')!r}; runner output:\n" + "\n".join(lines)
    result = outcome["result"]
    assert len(result.episodes) == 1, "\n".join(lines)
    episode = result.episodes[0]
    assert episode.chunks > 0 and episode.joint_chunks > 0, f"{episode.reason}; runner output:\n" + "\n".join(lines)
    assert len(ee) > 10, "no ee poses seen in the episode's scene"
    d0 = np.linalg.norm(start - target)  # the reset puts the arm home
    d_end = min(np.linalg.norm(p - target) for _, p in ee[len(ee) // 2:])
    assert d_end < 0.3 * d0, (f"ee from {d0:.3f} m to {d_end:.3f} m of the target above the bread; "
                              f"episode {episode.to_dict()}; statuses {result.statuses}; runner output: {lines}")
    # (clean_view is left out: on a loaded machine it may drop every frame of a short episode as stale)
    for stage in ("camera", "chunk", "joint_chunk"):
        assert result.latency[stage]["count"] > 0 and np.isfinite(result.latency[stage]["total_p50_ms"]), stage
    assert result.latency["ict"]["count"] == 0  # the replay policy needs no tokens: no state estimator runs
    assert result.controller.get("period_jitter_p50_ms") is not None
    video = tmp_path / "run" / "camera.mp4"
    assert video.stat().st_size > 0
    bag = tmp_path / "run" / "bag"
    assert (bag / "metadata.yaml").is_file(), (f"the bag is unfinished: {sorted(p.name for p in bag.glob('*'))}; "
                                               f"notes {result.notes}; runner output: {lines}; graph log: "
                                               f"{(tmp_path / 'run' / 'graph.log').read_text()[-3000:]}")
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    recorder_lines = [line for line in (tmp_path / "run" / "graph.log").read_text().splitlines()
                      if line.startswith("[record]")]
    for topic in ("action_chunk", "joint_chunk", "joint_trajectory", "task_state", "joint_states"):
        assert counts.get(f"/{ns}/{topic}", 0) > 0, f"{topic} not in the bag; the recorder's output:\n" + "\n".join(
            recorder_lines)
    assert f"/{ns}/camera/image_raw" not in counts  # images are in the video, not the bag, by default
    assert json.loads(json.dumps(result.to_dict()))["episodes"][0]["seed"] == SEED
