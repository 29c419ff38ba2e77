"""TransformTree against direct composition of the same transforms (numpy inverse) and scipy's Slerp."""

import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from humanego_core.geometry import GeometryError, interpolate
from humanego_core.transform_tree import (
    ConnectivityError,
    ExtrapolationError,
    TransformTree,
    TreeStructureError,
    UnknownFrameError,
)

NS = 1_000_000_000


def random_transform(rng) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.uniform(-2, 2, 3)
    return T


@pytest.fixture
def robot_tree():
    """world -> base -> link1 -> link2 -> ee and world -> camera_link -> camera_optical, all static."""
    rng = np.random.default_rng(0)
    edges = [("world", "base"), ("base", "link1"), ("link1", "link2"), ("link2", "ee"),
             ("world", "camera_link"), ("camera_link", "camera_optical")]
    T = {edge: random_transform(rng) for edge in edges}
    tree = TransformTree()
    for (parent, child), T_pc in T.items():
        tree.set(parent, child, T_pc, 0, static=True)
    return tree, T


def test_lookup_equals_direct_composition_in_both_directions(robot_tree):
    tree, T = robot_tree
    T_world_ee = T["world", "base"] @ T["base", "link1"] @ T["link1", "link2"] @ T["link2", "ee"]
    T_world_cam = T["world", "camera_link"] @ T["camera_link", "camera_optical"]
    T_cam_ee = np.linalg.inv(T_world_cam) @ T_world_ee
    np.testing.assert_allclose(tree.lookup("camera_optical", "ee"), T_cam_ee, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("ee", "camera_optical"), np.linalg.inv(T_cam_ee), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("world", "ee"), T_world_ee, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("ee", "world"), np.linalg.inv(T_world_ee), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("link1", "ee"), T["link1", "link2"] @ T["link2", "ee"], atol=1e-12)
    np.testing.assert_allclose(tree.lookup("ee", "ee"), np.eye(4), atol=0)
    # static edges hold at every time
    np.testing.assert_allclose(tree.lookup("camera_optical", "ee", 123 * NS), T_cam_ee, atol=1e-12)
    assert tree.parent("ee") == "link2" and tree.parent("world") is None
    assert tree.frames == sorted(["world", "base", "link1", "link2", "ee", "camera_link", "camera_optical"])


def test_dynamic_edge_is_interpolated_like_scipy_slerp():
    rng = np.random.default_rng(1)
    stamps = np.array([10, 20, 35, 50]) * NS // 100
    samples = [random_transform(rng) for _ in stamps]
    T_world_base = random_transform(rng)
    tree = TransformTree()
    tree.set("world", "base", T_world_base, 0, static=True)
    for stamp, T in zip(stamps[::-1], samples[::-1], strict=True):  # out of order on purpose
        tree.set("base", "tool", T, int(stamp))
    queries = np.array([stamps[0], 150_000_000, stamps[1], 270_000_000, 499_999_999, stamps[-1]])
    slerp = Slerp(stamps.astype(float), Rotation.from_matrix([T[:3, :3] for T in samples]))
    for q in queries:
        expected = np.eye(4)
        expected[:3, :3] = slerp(float(q)).as_matrix()
        expected[:3, 3] = [np.interp(q, stamps, [T[k, 3] for T in samples]) for k in range(3)]
        np.testing.assert_allclose(tree.lookup("base", "tool", int(q)), expected, atol=1e-9)
        np.testing.assert_allclose(tree.lookup("world", "tool", int(q)), T_world_base @ expected, atol=1e-9)
    # time None: the newest sample (the only dynamic edge ends there)
    np.testing.assert_allclose(tree.lookup("world", "tool"), T_world_base @ samples[-1], atol=1e-12)


def test_latest_common_time_of_a_chain_is_its_oldest_newest_sample():
    tree = TransformTree()
    a0, a1, b0, b1 = (random_transform(np.random.default_rng(i)) for i in range(4))
    tree.set("world", "a", a0, 0)
    tree.set("world", "a", a1, 2 * NS)
    tree.set("a", "b", b0, 0)
    tree.set("a", "b", b1, 1 * NS)
    # a is known until 2 s, b only until 1 s: the chain at 1 s, a halfway between its samples
    expected = TransformTree()
    expected.set("world", "a", a0, 0)
    expected.set("world", "a", a1, 2 * NS)
    np.testing.assert_allclose(tree.lookup("world", "b"), expected.lookup("world", "a", NS) @ b1, atol=1e-12)


def test_extrapolation_is_refused_saying_how_far():
    tree = TransformTree()
    tree.set("world", "base", np.eye(4), 1 * NS)
    tree.set("world", "base", np.eye(4), 2 * NS)
    with pytest.raises(ExtrapolationError, match=r"world -> base: .* 0\.250000 s after the newest"):
        tree.lookup("world", "base", 2 * NS + NS // 4)
    with pytest.raises(ExtrapolationError, match=r"0\.500000 s before the oldest"):
        tree.lookup("base", "world", NS // 2)
    single = TransformTree()
    single.set("world", "base", np.eye(4), 5)
    np.testing.assert_allclose(single.lookup("world", "base", 5), np.eye(4))
    with pytest.raises(ExtrapolationError):
        single.lookup("world", "base", 6)


def test_old_samples_leave_the_buffer():
    tree = TransformTree(buffer_duration_ns=NS)
    for k in range(31):  # 3 s at 10 Hz
        tree.set("world", "base", np.eye(4), k * NS // 10)
    tree.lookup("world", "base", 2 * NS)
    with pytest.raises(ExtrapolationError, match="before the oldest"):
        tree.lookup("world", "base", 2 * NS - NS // 10 - 1)
    static = TransformTree(buffer_duration_ns=NS)
    static.set("world", "base", np.eye(4), 0, static=True)
    np.testing.assert_allclose(static.lookup("world", "base", 100 * NS), np.eye(4))


def test_republished_static_transform_replaces_the_old_one():
    tree = TransformTree()
    T1, T2 = np.eye(4), random_transform(np.random.default_rng(5))
    tree.set("world", "cam", T1, 0, static=True)
    tree.set("world", "cam", T2, 10, static=True)
    np.testing.assert_allclose(tree.lookup("world", "cam", 0), T2)


def test_unknown_and_disconnected_frames_are_named():
    tree = TransformTree()
    tree.set("world", "base", np.eye(4), 0, static=True)
    tree.set("map", "odom", np.eye(4), 0, static=True)
    with pytest.raises(UnknownFrameError, match=r"'camera'.*known frames: base, map, odom, world"):
        tree.lookup("camera", "base")
    with pytest.raises(ConnectivityError, match=r"'odom'.*tree of 'map'.*'base'.*tree of 'world'"):
        tree.lookup("base", "odom")
    with pytest.raises(UnknownFrameError, match="none yet"):
        TransformTree().lookup("a", "b")


def test_cycles_reparenting_and_kind_changes_are_refused():
    tree = TransformTree()
    tree.set("world", "base", np.eye(4), 0, static=True)
    tree.set("base", "link1", np.eye(4), 0)
    with pytest.raises(TreeStructureError, match="cycle"):
        tree.set("link1", "world", np.eye(4), 0)
    with pytest.raises(TreeStructureError, match="already has parent 'base'; refusing to reparent it to 'world'"):
        tree.set("world", "link1", np.eye(4), 0)
    with pytest.raises(TreeStructureError, match="is dynamic and was now given as static"):
        tree.set("base", "link1", np.eye(4), 1, static=True)
    with pytest.raises(TreeStructureError, match="itself"):
        tree.set("base", "base", np.eye(4), 0)
    with pytest.raises(TreeStructureError, match="empty"):
        tree.set("", "x", np.eye(4), 0)
    # the refused edges left the tree as it was
    assert tree.parent("world") is None and tree.parent("link1") == "base"


@pytest.mark.parametrize("bad", [np.full((4, 4), np.nan), np.diag([1.0, 1.0, -1.0, 1.0]), np.eye(3)])
def test_non_rigid_transforms_are_refused(bad):
    with pytest.raises(GeometryError, match="world -> base"):
        TransformTree().set("world", "base", bad, 0)


def test_set_many_adds_the_good_edges_and_returns_the_refused_ones():
    rng = np.random.default_rng(9)
    T = [random_transform(rng) for _ in range(3)]
    tree = TransformTree()
    tree.set("world", "base", T[0], 0, static=True)
    refused = tree.set_many([("base", "link1", T[1], 10), ("link1", "world", T[2], 10),  # a cycle
                             ("base", "link2", np.full((4, 4), np.nan), 10), ("link1", "link3", T[2], 10)])
    assert [i for i, _ in refused] == [1, 2]
    assert isinstance(refused[0][1], TreeStructureError) and isinstance(refused[1][1], GeometryError)
    np.testing.assert_allclose(tree.lookup("world", "link3", 10), T[0] @ T[1] @ T[2], atol=1e-12)
    assert "link2" not in tree.frames
    assert tree.set_many([("base", "link1", T[2], 20)]) == []
    assert tree.set_many([]) == []
    np.testing.assert_allclose(tree.lookup("base", "link1", 15), interpolate(T[1], T[2], 0.5), atol=1e-12)


def test_concurrent_filling_and_lookups():
    tree = TransformTree()
    tree.set("world", "base", np.eye(4), 0, static=True)
    tree.set("base", "tool", np.eye(4), 0)
    failures = []

    def fill():
        for k in range(1, 2000):
            T = np.eye(4)
            T[0, 3] = k
            tree.set("base", "tool", T, k)

    def look():
        for _ in range(2000):
            T = tree.lookup("world", "tool")
            if not np.isfinite(T).all() or T[0, 3] < 0:
                failures.append(T)

    threads = [threading.Thread(target=fill), threading.Thread(target=look)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    np.testing.assert_allclose(tree.lookup("world", "tool", 1000)[0, 3], 1000)
