"""VrsReader on the real Aria recording (and damaged copies of it); replay timelines and pacing."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from projectaria_tools.core import data_provider

from humanego_drivers.aria import open_vrs_replay
from humanego_drivers.mps import MpsError
from humanego_drivers.replay import FRAME, HANDS, CameraStream, Event, Pacer, ReplaySource, timeline
from humanego_drivers.vrs import VrsError, VrsReader

ARIA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "aria"
VRS = ARIA / "recording.vrs"
pytestmark = pytest.mark.skipif(not VRS.is_file(), reason=f"real Aria sample data not found at {VRS}")


def test_rgb_and_slam_frames_match_projectarias_records():
    provider = data_provider.create_vrs_data_provider(str(VRS))
    for label, shape, count in [("camera-rgb", (1408, 1408, 3), 8), ("camera-slam-left", (480, 640), 4)]:
        reader = VrsReader(VRS, label)
        stream = provider.get_stream_id_from_label(label)
        records = [provider.get_image_data_by_index(stream, i) for i in range(count)]
        assert reader.num_frames == count and not reader.truncated
        np.testing.assert_array_equal(reader.timestamps_ns, [r.capture_timestamp_ns for _, r in records])
        for i in (0, count - 1):
            frame = reader.read(i)
            assert frame.shape == shape and frame.dtype == np.uint8
            np.testing.assert_array_equal(frame, records[i][0].to_numpy_array())
        assert (reader.camera_model.width, reader.camera_model.height) == (shape[1], shape[0])
    rgb = VrsReader(VRS)
    assert rgb.nominal_rate_hz > 0 and '"camera-rgb"' in rgb.device_calibration_json()
    with pytest.raises(IndexError, match="frame 8 of 8"):
        rgb.read(8)


def test_bad_files_are_named_with_what_is_wrong(tmp_path):
    cases = {"missing.vrs": None, "empty.vrs": b"", "notes.vrs": b"this is a text file\n" * 50,
             "tiny.vrs": VRS.read_bytes()[:100]}
    expected = {"missing.vrs": "no such file", "empty.vrs": "the file is empty",
                "notes.vrs": "not an Aria .vrs recording", "tiny.vrs": "damaged or truncated"}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(VrsError, match=expected[name]) as err:
            VrsReader(path)
        assert str(path) in str(err.value)
    with pytest.raises(VrsError, match="not a file"):
        VrsReader(tmp_path)
    with pytest.raises(VrsError, match=r"no camera 'camera-depth'.*camera-rgb"):
        VrsReader(VRS, "camera-depth")


def test_a_truncated_recording_is_refused_unless_its_complete_frames_are_asked_for(tmp_path):
    cut = tmp_path / "cut.vrs"
    cut.write_bytes(VRS.read_bytes()[:2_000_000])
    with pytest.raises(VrsError, match=r"truncated \(\d+ records lie beyond its end.*4 camera-rgb frames are complete"):
        VrsReader(cut)
    reader = VrsReader(cut, allow_truncated=True)
    assert reader.truncated and reader.num_frames == 4
    np.testing.assert_array_equal(reader.read(3), VrsReader(VRS).read(3))


def test_mps_of_another_recording_is_refused_with_both_time_ranges(tmp_path):
    with pytest.raises(MpsError) as err:
        open_vrs_replay(VRS, ARIA / "mps_sample")
    message = str(err.value)
    assert "86.385" in message and "149.20" in message and str(VRS) in message
    shutil.copytree(ARIA / "mps_sample" / "trajectory", tmp_path / "slam")
    with pytest.raises(MpsError, match="149.20"):
        open_vrs_replay(VRS, tmp_path)


def stream(name, times):
    return CameraStream(name, f"{name}_optical", None, np.asarray(times, dtype=np.int64),
                        frames=lambda start: iter(()))


class FakeHands:
    """Only the hand-tracking times matter to the timeline."""

    def __init__(self, t_ns):
        self.t_ns = np.asarray(t_ns, dtype=np.int64)


def test_timeline_merges_streams_and_hands_within_the_main_cameras_span():
    source = ReplaySource("test", [stream("camera", [100, 200, 300]), stream("slam_left", [150, 250])],
                          hands=FakeHands([0, 60, 200, 340, 400]))
    events = timeline(source)
    assert [e.t_ns for e in events] == [60, 100, 150, 200, 200, 250, 300, 340]
    assert events[3] == Event(200, FRAME, 0, 1) and events[4] == Event(200, HANDS, -1, 2)
    assert [e.stream for e in events if e.kind == FRAME] == [0, 1, 0, 1, 0]


def test_pacer_schedules_device_time_at_the_playback_rate():
    pacer = Pacer(2.0)
    assert pacer.delay(1_000_000_000, now_s=10.0) == 0.0
    assert pacer.delay(2_000_000_000, now_s=10.1) == pytest.approx(0.4)
    assert pacer.delay(3_000_000_000, now_s=12.0) == 0.0  # 1 s late: restarts from now
    assert pacer.delay(3_500_000_000, now_s=12.0) == pytest.approx(0.25)
    pacer.restart()
    assert pacer.delay(9_000_000_000, now_s=20.0) == 0.0
    assert Pacer(0.0).delay(5, 0.0) == 0.0
    with pytest.raises(ValueError, match="playback rate"):
        Pacer(-1.0)
