"""Task configs: loading, validation errors a user would hit, placement sampling, success predicates."""

from dataclasses import replace

import numpy as np
import pytest

from humanego_core.config import ConfigError
from humanego_sim import tasks


def test_shipped_tasks_load_and_cover_different_kinds():
    names = tasks.available_tasks()
    assert {"serve_bread", "push_box", "put_in_bowl"} <= set(names)
    kinds = set()
    for name in names:
        task = tasks.load_task(name)
        assert task.name == name and task.instruction.strip()
        kinds.add(task.kind)
    assert kinds == {"pick_place", "push"}


def test_unknown_task_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown task 'serve_toast'.*serve_bread"):
        tasks.load_task("serve_toast")


def write_variant(tmp_path, edit):
    import yaml

    data = yaml.safe_load((tasks.tasks_dir() / "serve_bread.yaml").read_text())
    edit(data)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_range_off_the_table_is_named(tmp_path):
    path = write_variant(tmp_path, lambda d: d["placement"]["bread"].update(x=[0.4, 1.2]))
    with pytest.raises(ConfigError, match=r"placement\.bread\.x.*does not fit on the table"):
        tasks.load_task(str(path))


def test_ranges_that_cannot_be_apart_are_named(tmp_path):
    def overlap(d):
        d["placement"]["bread"] = {"x": [0.45, 0.46], "y": [0.0, 0.01]}
        d["placement"]["plate"] = {"x": [0.45, 0.46], "y": [0.0, 0.01]}

    with pytest.raises(ConfigError, match=r"placement\.bread.*cannot fit.*placement\.plate"):
        tasks.load_task(str(write_variant(tmp_path, overlap)))


def test_reversed_range_and_unknown_object_are_named(tmp_path):
    path = write_variant(tmp_path, lambda d: d["placement"]["bread"].update(yaw=[0.5, -0.5]))
    with pytest.raises(ConfigError, match=r"placement\.bread\.yaw.*min <= max"):
        tasks.load_task(str(path))
    path = write_variant(tmp_path, lambda d: d.update(goal="bowl"))
    with pytest.raises(ConfigError, match=r"goal: 'bowl' is not one of the objects"):
        tasks.load_task(str(path))


def test_placements_are_deterministic_in_range_and_apart():
    task = tasks.load_task("serve_bread")
    a = tasks.sample_placements(task, np.random.default_rng(7))
    b = tasks.sample_placements(task, np.random.default_rng(7))
    assert a == b
    for seed in range(200):
        p = tasks.sample_placements(task, np.random.default_rng(seed))
        for name, pose in p.items():
            r = task.placement[name]
            assert r.x[0] <= pose.x <= r.x[1] and r.y[0] <= pose.y <= r.y[1] and r.yaw[0] <= pose.yaw <= r.yaw[1]
        assert np.hypot(p["bread"].x - p["plate"].x, p["bread"].y - p["plate"].y) >= task.min_separation


def test_impossible_sampling_says_what_to_change():
    task = tasks.load_task("serve_bread")
    crowded = replace(task, min_separation=10.0)
    with pytest.raises(tasks.PlacementError, match="widen the placement ranges"):
        tasks.sample_placements(crowded, np.random.default_rng(0), max_tries=20)


@pytest.mark.parametrize("offset, lift, speed, expected", [
    ((0.0, 0.0), 0.0, 0.0, True),      # resting on the plate, centred
    ((0.03, 0.0), 0.0, 0.0, True),     # 3 cm off: within 4 cm
    ((0.03, 0.03), 0.0, 0.0, False),   # 4.2 cm off
    ((0.0, 0.0), 0.10, 0.0, False),    # held above the plate
    ((0.0, 0.0), 0.0, 0.2, False),     # still moving
])
def test_serve_bread_success_predicate_closed_form(offset, lift, speed, expected):
    task = tasks.load_task("serve_bread")
    table = 0.75
    plate = np.array([0.5, 0.1, table])
    bread = plate + [offset[0], offset[1], task.objects["plate"].size[1] + lift]
    assert tasks.check_success(task, table, bread, plate, speed).success is expected


def test_push_success_is_on_the_table_and_nan_never_succeeds():
    task = tasks.load_task("push_box")
    marker = np.array([0.6, 0.0, 0.75])
    assert tasks.check_success(task, 0.75, marker + [0.02, 0.0, 0.0], marker, 0.0).success
    assert not tasks.check_success(task, 0.75, marker + [0.0, 0.0, 0.05], marker, 0.0).success
    assert not tasks.check_success(task, 0.75, np.array([np.nan, 0, 0.75]), marker, 0.0).success
