"""The ground-truth oracle on real MuJoCo physics: tasks solved by contact and friction, IK, CLI."""

import json

import mujoco
import numpy as np
import pytest

from humanego_sim import oracle
from humanego_sim.oracle import ArmKinematics, OracleController, down_rotation, observe, run_episode
from humanego_sim.tasks import Placement, load_task
from humanego_sim.world import World, load_world_config

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def worlds():
    made = {}

    def get(task, robot="panda"):
        if (task, robot) not in made:
            made[task, robot] = World(load_task(task), robot=robot)
        return made[task, robot]

    yield get
    for world in made.values():
        world.close()


def contacts_of(world: World, body: str) -> set[str]:
    m, d = world.model, world.data
    target = m.body(body).id
    touching = set()
    for i in range(d.ncon):
        b1, b2 = m.geom_bodyid[d.contact[i].geom1], m.geom_bodyid[d.contact[i].geom2]
        if target in (b1, b2):
            other = b2 if b1 == target else b1
            touching.add(m.body(other).name if other else m.geom(d.contact[i].geom1 if b1 == 0 else
                                                                     d.contact[i].geom2).name)
    return touching


@pytest.mark.parametrize("task", ["serve_bread", "put_in_bowl"])
def test_pick_and_place_by_friction(worlds, task):
    world = worlds(task)
    controller = OracleController.for_world(world)
    manipulated = world.task.manipulated
    # Nothing attaches objects to the gripper: the only equality constraint is the finger coupling.
    assert [mujoco.mjtEq(t) for t in world.model.eq_type] == [mujoco.mjtEq.mjEQ_JOINT]
    for seed in SEEDS:
        carried = []

        def during_carry(w, carried=carried):
            if controller.phase == "carry":
                carried.append((w.object_pose(manipulated)[2, 3] - w.config.table.height, contacts_of(w, manipulated)))

        result = run_episode(world, controller, seed, on_step=during_carry)
        assert result.success, f"seed {seed}: {result.reason}"
        assert world.check_success().success
        # While carried, the object is off the table, held only by the two fingers' contacts.
        assert carried and min(height for height, _ in carried) > 0.05
        assert all(touching == {"leftfinger", "rightfinger"} for _, touching in carried), carried[0][1]


def test_push_slides_the_box(worlds):
    world = worlds("push_box")
    controller = OracleController.for_world(world)
    for seed in SEEDS:
        result = run_episode(world, controller, seed)
        assert result.success, f"seed {seed}: {result.reason}"
        assert world.check_success().success
        assert result.max_lift < 0.005, "the box was lifted or tipped, not pushed"


def test_ur5e_solves_a_task(worlds):
    world = worlds("serve_bread", "ur5e")
    result = run_episode(world, OracleController.for_world(world), 0)
    assert result.success, result.reason


@pytest.mark.parametrize("base, home", [
    # Tilted 38 degrees forward, like a hand about to grasp: pointing down at its own yaw needs joint 7 past
    # its limit.
    ([0.0, 0.0, 0.75], [-0.0479, -0.0141, -0.038, -2.5915, 2.0326, 2.9487, 1.657]),
    # Mounted to the side, holding the gripper like a hand resting right of the objects: the down-pointing yaw
    # nearest its own puts joint 7 0.02 rad from its limit, where the next move fails (OracleConfig.limit_margin).
    ([0.0, -0.19, 0.75], [-0.247, 0.198, -0.256, -2.335, 1.312, 2.54, 1.844]),
])
def test_a_home_that_tilts_the_gripper_is_turned_to_point_down_first(base, home):
    config = load_world_config()
    config.robot.position = base
    config.robot.home["panda"] = home
    world = World(load_task("serve_bread"), config, robot="panda")
    try:
        controller = OracleController.for_world(world)
        phases = []
        result = run_episode(world, controller, 0, on_step=lambda w: phases.append(controller.phase))
        assert result.success, result.reason
        assert phases[0] == "point down" and "point down" not in phases[phases.index("approach"):]
        T_ready = controller.kin.fk(controller.ready)
        assert T_ready[2, 2] < -0.9999  # the posture the null space pulls towards points straight down
    finally:
        world.close()


@pytest.mark.parametrize("robot", ["panda", "ur5e"])
def test_ik_reaches_poses_within_joint_limits(worlds, robot):
    world = worlds("serve_bread", robot)
    world.reset(0)
    before = world.data.qpos.copy()
    home = world.home_configuration()
    kin = ArmKinematics(world.model, world.robot, home)
    oracle = OracleController.for_world(world)
    # The oracle points the gripper down, turned at most a quarter turn from home's yaw (closest_symmetric_yaw).
    for position, turn in [([0.45, -0.15, 0.80], 0.6), ([0.55, 0.2, 0.85], -1.0), ([0.35, 0.0, 0.95], -1.5)]:
        yaw = oracle.home_yaw + turn
        q, error = kin.solve(np.array(position), down_rotation(yaw), oracle.ready, oracle.ready)
        assert error < 1e-3
        T = kin.fk(q)
        np.testing.assert_allclose(T[:3, 3], position, atol=1e-3)
        np.testing.assert_allclose(T[:3, :3], down_rotation(yaw), atol=1e-2)
        assert np.all(q >= world.robot.arm_limits[:, 0]) and np.all(q <= world.robot.arm_limits[:, 1])
    # Solving works on its own MjData: the simulation is untouched.
    np.testing.assert_array_equal(world.data.qpos, before)


def test_gripper_geometry_is_measured_from_the_model(worlds):
    g = OracleController.for_world(worlds("serve_bread")).gripper_geometry
    # urdf/panda.urdf: fingers from 0.0584 to 0.1084 below the hand, ee at 0.1034, palm bar down to 0.08.
    assert g.tip_offset == pytest.approx(0.005, abs=1e-6)
    assert g.palm_clearance == pytest.approx(0.1034 - 0.08, abs=1e-6)
    assert g.finger_half_width == pytest.approx(0.01, abs=1e-6)


def test_unreachable_object_is_reported_not_chased(worlds):
    world = worlds("serve_bread")
    table = world.config.table
    far = Placement(table.centre[0] + table.size[0] / 2 - 0.06, table.size[1] / 2 - 0.06, 0.0)
    world.reset(placements={"bread": far, "plate": Placement(0.45, 0.0, 0.0)})
    controller = OracleController.for_world(world)
    obs = observe(world)
    controller.reset(obs)
    while not controller.done and obs.time < 10.0:
        action = controller.act(obs)
        assert np.all(np.isfinite(action.arm_q))
        world.set_arm_targets(action.arm_q)
        world.set_gripper_target(action.gripper)
        world.step(10)
        obs = observe(world)
    assert controller.done and "IK cannot reach" in controller.failure


def test_cli_prints_summary_and_writes_json(tmp_path, capsys):
    out = tmp_path / "oracle.json"
    assert oracle.main(["--task", "push_box", "--robot", "panda", "--seeds", "1", "--first-seed", "5",
                        "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "oracle push_box / panda: 1/1 succeeded (100.0 %)" in printed
    summary = json.loads(out.read_text())
    assert summary["results"][0]["seed"] == 5 and summary["results"][0]["success"]
    with pytest.raises(SystemExit):
        oracle.main(["--seeds", "0"])
