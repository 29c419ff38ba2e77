"""Intel RealSense cameras through pyrealsense2: a live device or a ``.db3`` recording, as numpy frames.

Plain Python (no rclpy); ``realsense_node`` wires it to ROS.

:class:`RealSenseCamera` opens

- a **live device** (any, or the one with a given ``serial``): colour (rgb8) and depth (z16) at the
  requested size and rate through a ``pipeline``; librealsense's syncer pairs the frames and
  ``rs.align`` maps the depth into the colour camera;
- a **recording** (``.db3``, the rosbag2 files librealsense >= 2.56 records; older ``.bag`` files are
  handed to librealsense as well) through a playback device, either paced like the recording
  (``real_time=True``) or as fast as the reader takes frames and **without dropping any**
  (``real_time=False``: librealsense then waits for each frame to be taken, which makes runs
  deterministic). The recorded streams are played as they are (``width``/``height``/``fps`` apply to
  live devices only). Colour and depth are delivered by librealsense on separate threads; each colour
  frame is paired with the depth frame nearest in time (at most half a depth frame period away,
  otherwise the frame has no depth) and the pair is aligned with ``rs.align``, unless the depth is
  already registered to the colour camera (same intrinsics, identity extrinsics), where it is passed
  through untouched. :meth:`RealSenseCamera.read` returns ``None`` at the end of the recording.

Each :class:`RealSenseFrame` carries the **device timestamp of the colour frame** in integer
nanoseconds at the microsecond resolution of RealSense timestamps, and the clock it is in
(``timestamp_domain``): ``global_time`` (librealsense's default on D400/D500 cameras: the device's
hardware clock translated into the host's system clock, milliseconds since the Unix epoch),
``hardware_clock`` (the device's own counter since power-up) or ``system_time`` (host arrival time).
A recording keeps the domain and values it was recorded with.

Failures raise :class:`RealSenseError` with a message naming the file (missing, not a recording,
corrupt, without a colour/depth stream) or the device ("no RealSense device connected (serial X)",
device lost: no frame within ``timeout_s``).

What is exercised without a camera (this project's machines have none): everything on the
recording path, with real pyrealsense2 on real files that pyrealsense2 itself writes
(:func:`write_db3`: a ``software_device`` recorded by ``rs.recorder``): playback, pairing, alignment,
intrinsics, timestamps, end of file and the error messages; and, for live devices, the
"no device connected" path. Not exercised: streaming from a live device (``_open_live`` beyond the
device query, ``_read_live``) and losing a device while it streams.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyrealsense2 as rs

from humanego_core.camera_models import LINEAR, CameraModel

# ROS CameraInfo distortion model of each librealsense model (as realsense-ros maps them). The Brown-Conrady
# family keeps its five coefficients [k1, k2, p1, p2, k3]; note that librealsense's *inverse* Brown-Conrady
# maps distorted to undistorted points, so plumb_bob is exact for it only while the coefficients are zero
# (as on D435 colour cameras).
ROS_DISTORTION_MODELS = {
    rs.distortion.none: "",
    rs.distortion.brown_conrady: "plumb_bob",
    rs.distortion.inverse_brown_conrady: "plumb_bob",
    rs.distortion.modified_brown_conrady: "plumb_bob",
    rs.distortion.kannala_brandt4: "equidistant",
    rs.distortion.ftheta: "ftheta",  # no ROS model: one coefficient, the field of view
}
NUM_COEFFS = {"": 0, "plumb_bob": 5, "equidistant": 4, "ftheta": 1}

# Colour formats a recording may hold, as (channels, channel order to get RGB).
COLOR_FORMATS = {
    rs.format.rgb8: (3, [0, 1, 2]),
    rs.format.bgr8: (3, [2, 1, 0]),
    rs.format.rgba8: (4, [0, 1, 2]),
    rs.format.bgra8: (4, [2, 1, 0]),
}

# Frames the pairing keeps at most per stream before giving up waiting (librealsense frame pools are small).
MAX_PENDING = 4


class RealSenseError(RuntimeError):
    """A RealSense device or recording that cannot be (or can no longer be) read."""


@dataclass(frozen=True)
class RealSenseFrame:
    """One colour frame with its depth aligned to it."""

    timestamp_ns: int  # device timestamp of the colour frame (microsecond resolution), see timestamp_domain
    timestamp_domain: str  # "global_time", "hardware_clock" or "system_time" (see the module docstring)
    frame_number: int  # of the colour frame
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None  # (H, W) uint16 millimetres in the colour camera (0 = no depth), or None
    camera: CameraModel  # colour intrinsics, pinhole
    distortion: tuple[float, ...]  # colour distortion coefficients in the order of distortion_model
    distortion_model: str  # ROS name ("plumb_bob", "equidistant", ...) or "" when there is no distortion

    @property
    def K(self) -> np.ndarray:
        fx, fy, cx, cy = self.camera.params
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def ms_to_ns(ms: float) -> int:
    """A RealSense timestamp (float milliseconds) in integer nanoseconds, rounded to the microsecond: a double
    holds epoch milliseconds to ~0.2 us, so finer digits would be noise."""
    return int(round(float(ms) * 1000.0)) * 1000


def intrinsics_to_camera(intr: rs.intrinsics) -> tuple[CameraModel, tuple[float, ...], str]:
    """(pinhole camera model, distortion coefficients, ROS distortion model name) of librealsense intrinsics.
    All-zero coefficients count as no distortion."""
    camera = CameraModel(LINEAR, [intr.fx, intr.fy, intr.ppx, intr.ppy], intr.width, intr.height)
    model = ROS_DISTORTION_MODELS.get(intr.model, "plumb_bob")
    coeffs = tuple(float(c) for c in list(intr.coeffs)[:NUM_COEFFS[model]])
    if not any(coeffs):
        return camera, (), ""
    return camera, coeffs, model


def _rgb_of(frame: rs.video_frame) -> np.ndarray:
    fmt = frame.get_profile().format()
    if fmt not in COLOR_FORMATS:
        raise RealSenseError(f"colour format {fmt} is not supported (supported: rgb8, bgr8, rgba8, bgra8)")
    channels, order = COLOR_FORMATS[fmt]
    data = np.asanyarray(frame.get_data())
    data = data.reshape(frame.get_height(), frame.get_width(), channels)
    if order == [0, 1, 2] and channels == 3:
        return data.copy()
    return np.ascontiguousarray(data[:, :, order])


def _depth_mm_of(frame: rs.depth_frame) -> np.ndarray:
    raw = np.asanyarray(frame.get_data()).reshape(frame.get_height(), frame.get_width())
    units = frame.get_units()
    if math.isclose(units, 0.001, rel_tol=1e-6):
        return raw.copy()
    return np.clip(np.rint(raw * (units * 1000.0)), 0, 65535).astype(np.uint16)


def _same_serial(actual: str, wanted: str) -> bool:
    """Serial numbers match, also when the wanted one went through a number and lost its leading zeros."""
    return actual == wanted or (actual.isdigit() and wanted.isdigit() and int(actual) == int(wanted))


def _is_registered(depth: rs.video_stream_profile, color: rs.video_stream_profile) -> bool:
    """Depth already in the colour camera: same intrinsics and an identity transform between them."""
    di, ci = depth.get_intrinsics(), color.get_intrinsics()
    same = ((di.width, di.height, di.fx, di.fy, di.ppx, di.ppy, di.model, list(di.coeffs))
            == (ci.width, ci.height, ci.fx, ci.fy, ci.ppx, ci.ppy, ci.model, list(ci.coeffs)))
    if not same:
        return False
    try:
        ext = depth.get_extrinsics_to(color)
    except RuntimeError:
        return False
    return list(ext.rotation) == [1, 0, 0, 0, 1, 0, 0, 0, 1] and not any(ext.translation)


class FramePairer:
    """Pairs each colour frame with the depth frame nearest in time, for two streams that each arrive in order
    but, delivered by different threads, not in order with respect to each other.

    A colour frame is released once a depth frame at or after its time has arrived (nothing nearer can come
    then), or at the end (``flush``), or when too many colour frames wait (a stalled depth stream). A depth
    frame further than ``tolerance_ms`` from the colour frame is no match: the colour frame goes out alone.
    Items are opaque; only their timestamps (ms) are used.
    """

    def __init__(self, tolerance_ms: float, max_pending: int = MAX_PENDING):
        self.tolerance_ms = tolerance_ms
        self.max_pending = max_pending
        self._color: deque = deque()
        self._depth: deque = deque()

    def add_color(self, item, t_ms: float) -> None:
        self._color.append((t_ms, item))

    def add_depth(self, item, t_ms: float) -> None:
        self._depth.append((t_ms, item))
        while len(self._depth) > self.max_pending:
            self._depth.popleft()

    def pop_ready(self, flush: bool = False) -> list[tuple[object, object | None]]:
        out = []
        while self._color:
            t_c, color = self._color[0]
            # Depth frames before the latest one at or before t_c can be nearest to no colour frame from now on.
            while len(self._depth) >= 2 and self._depth[1][0] <= t_c:
                self._depth.popleft()
            later_depth = bool(self._depth) and self._depth[-1][0] >= t_c
            if not (later_depth or flush or len(self._color) > self.max_pending):
                break
            best = min(self._depth, key=lambda d: abs(d[0] - t_c), default=None)
            match = best[1] if best is not None and abs(best[0] - t_c) <= self.tolerance_ms else None
            out.append((color, match))
            self._color.popleft()
        return out

    def clear(self) -> None:
        self._color.clear()
        self._depth.clear()


class RealSenseCamera:
    """A live RealSense device or a recording, read frame by frame (see the module docstring).

    ``with RealSenseCamera(recording="take.db3", real_time=False) as cam: for frame in cam: ...``
    """

    def __init__(self, serial: str = "", recording: str | Path | None = None, width: int = 640, height: int = 480,
                 fps: int = 30, depth: bool = True, real_time: bool = True, timeout_s: float = 5.0):
        self.serial = serial
        self.recording = Path(recording) if recording else None
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.depth = depth
        self.real_time = real_time
        self.timeout_s = timeout_s
        self.finished = False  # end of the recording reached
        self.device_name = ""
        self._pipeline = None
        self._align = None
        self._color_profile = None
        # playback
        self._ctx = None
        self._playback = None
        self._sensors: list = []
        self._started = False
        self._queue: queue.Queue = queue.Queue(maxsize=2 * MAX_PENDING)
        self._closing = threading.Event()
        self._played = threading.Event()
        self._stopped = threading.Event()
        self._all_started = threading.Event()
        self._pairer: FramePairer | None = None
        self._registered = True
        self._composer = None
        self._composed = None
        self._pair: list = []
        self._pending: deque = deque()
        self.camera: CameraModel | None = None
        self.distortion: tuple[float, ...] = ()
        self.distortion_model = ""

    @property
    def is_open(self) -> bool:
        return self._pipeline is not None or self._playback is not None

    @property
    def source(self) -> str:
        if self.recording is not None:
            return f"recording {self.recording}"
        return f"RealSense {self.serial}" if self.serial else "RealSense (first found)"

    # ----- opening -----
    def open(self) -> RealSenseCamera:
        """Open the device (streaming starts) or the recording (playback starts at the first read)."""
        self.close()
        self.finished = False
        if self.recording is not None:
            self._open_playback()
        else:
            self._open_live()
        return self

    def _set_color_profile(self, profile) -> None:
        self._color_profile = profile.as_video_stream_profile()
        self.camera, self.distortion, self.distortion_model = intrinsics_to_camera(self._color_profile.get_intrinsics())

    def _open_live(self) -> None:
        ctx = rs.context()
        serials = [dev.get_info(rs.camera_info.serial_number) for dev in ctx.query_devices()]
        wanted = f" (serial {self.serial})" if self.serial else ""
        if not serials:
            raise RealSenseError(f"no RealSense device connected{wanted}")
        if self.serial:
            matching = [s for s in serials if _same_serial(s, self.serial)]
            if not matching:
                raise RealSenseError(f"no RealSense device connected with serial {self.serial} "
                                     f"(connected: {', '.join(serials)})")
            self.serial = matching[0]
        config = rs.config()
        if self.serial:
            config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        if self.depth:
            config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        pipeline = rs.pipeline(ctx)
        streams = "colour + depth" if self.depth else "colour"
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:
            raise RealSenseError(f"cannot stream {streams} at {self.width}x{self.height} {self.fps} Hz from "
                                 f"{self.source}: {exc}") from None
        self._pipeline = pipeline
        self.device_name = profile.get_device().get_info(rs.camera_info.name)
        self.serial = self.serial or profile.get_device().get_info(rs.camera_info.serial_number)
        self._set_color_profile(profile.get_stream(rs.stream.color))
        self._align = rs.align(rs.stream.color) if self.depth else None

    def _open_playback(self) -> None:
        path = self.recording
        if not path.exists():
            raise RealSenseError(f"RealSense recording {path} does not exist")
        if not path.is_file():
            raise RealSenseError(f"RealSense recording {path} is not a file")
        self._ctx = rs.context()
        try:
            playback = self._ctx.load_device(str(path))
        except RuntimeError as exc:
            raise RealSenseError(f"cannot read RealSense recording {path} (not a RealSense .db3 recording, or "
                                 f"corrupt): {exc}") from None
        self._playback = playback
        self.device_name = playback.get_info(rs.camera_info.name) if playback.supports(rs.camera_info.name) else ""
        if playback.supports(rs.camera_info.serial_number):
            self.serial = playback.get_info(rs.camera_info.serial_number)
        playback.set_real_time(self.real_time)
        color = depth = None
        for sensor in playback.query_sensors():
            for profile in sensor.get_stream_profiles():
                if profile.stream_type() == rs.stream.color and color is None:
                    color = (sensor, profile)
                elif profile.stream_type() == rs.stream.depth and depth is None and self.depth:
                    depth = (sensor, profile)
        if color is None:
            raise RealSenseError(f"RealSense recording {path} has no colour stream")
        if self.depth and depth is None:
            raise RealSenseError(f"RealSense recording {path} has no depth stream (play it with depth off)")
        if color[1].format() not in COLOR_FORMATS:
            raise RealSenseError(f"RealSense recording {path}: colour format {color[1].format()} is not supported "
                                 f"(supported: rgb8, bgr8, rgba8, bgra8)")
        self._set_color_profile(color[1])
        by_sensor: dict = {}
        for sensor, profile in filter(None, (color, depth)):
            by_sensor.setdefault(id(sensor), (sensor, []))[1].append(profile)
        try:
            for sensor, profiles in by_sensor.values():
                sensor.open(profiles)
                self._sensors.append(sensor)
        except RuntimeError as exc:
            self.close()
            raise RealSenseError(f"cannot play RealSense recording {path}: {exc}") from None
        if depth is not None:
            depth_profile = depth[1].as_video_stream_profile()
            self._registered = _is_registered(depth_profile, self._color_profile)
            self._pairer = FramePairer(tolerance_ms=500.0 / max(1, depth_profile.fps()))
            if not self._registered:
                self._align = rs.align(rs.stream.color)
                self._composed = rs.frame_queue(1)
                self._composer = rs.processing_block(self._compose)
                self._composer.start(self._composed)
        playback.set_status_changed_callback(self._on_status)

    # ----- playback plumbing (librealsense threads) -----
    def _on_status(self, status) -> None:
        if status == rs.playback_status.playing:
            # The reader starts with the first sensor, and would fail on a frame of a sensor not yet started:
            # hold it (this runs on its thread before its first read) until every sensor has started.
            self._all_started.wait(5.0)
            self._played.set()
        elif status == rs.playback_status.stopped and self._played.is_set():
            self._stopped.set()

    def _on_frame(self, frame) -> None:
        # Blocking here holds back a non-real-time playback until the reader catches up: no frame is lost.
        while not self._closing.is_set():
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def _compose(self, frame, source) -> None:
        source.frame_ready(source.allocate_composite_frame(self._pair))

    # ----- reading -----
    def read(self, timeout_s: float | None = None) -> RealSenseFrame | None:
        """The next frame; ``None`` at the end of a recording. Raises RealSenseError when no frame comes within
        ``timeout_s`` (default: the constructor's), e.g. because the device was unplugged."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self._pipeline is not None:
            return self._read_live(timeout_s)
        if self._playback is None:
            raise RealSenseError(f"{self.source} is not open")
        return self._read_playback(timeout_s)

    def __iter__(self) -> Iterator[RealSenseFrame]:
        while (frame := self.read()) is not None:
            yield frame

    def _read_live(self, timeout_s: float) -> RealSenseFrame:
        try:
            ok, frames = self._pipeline.try_wait_for_frames(int(timeout_s * 1000))
        except RuntimeError as exc:
            raise RealSenseError(f"device lost: {self.source}: {exc}") from None
        if not ok:
            raise RealSenseError(f"device lost: no frame from {self.source} within {timeout_s:g} s")
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        depth = frames.get_depth_frame() if self.depth else None
        return self._frame(color, depth if depth else None)

    def _read_playback(self, timeout_s: float) -> RealSenseFrame | None:
        if self._pending:
            return self._pending.popleft()
        if self.finished:
            return None
        if not self._started:
            for sensor in self._sensors:
                sensor.start(self._on_frame)
            self._started = True
            self._all_started.set()
        deadline = time.monotonic() + timeout_s
        while True:
            stopped = self._stopped.is_set()
            try:
                frame = self._queue.get(timeout=0.02)
            except queue.Empty:
                if stopped:  # librealsense had handed over every frame before saying "stopped"
                    self.finished = True
                    self._emit(self._pairer.pop_ready(flush=True) if self._pairer else [])
                    return self._pending.popleft() if self._pending else None
                if time.monotonic() > deadline:
                    raise RealSenseError(f"no frame from {self.source} within {timeout_s:g} s") from None
                continue
            stream = frame.get_profile().stream_type()
            if self._pairer is None:
                if stream == rs.stream.color:
                    return self._frame(frame.as_video_frame(), None)
                continue
            if stream == rs.stream.color:
                self._pairer.add_color(frame, frame.get_timestamp())
            elif stream == rs.stream.depth:
                self._pairer.add_depth(frame, frame.get_timestamp())
            self._emit(self._pairer.pop_ready())
            if self._pending:
                return self._pending.popleft()

    def _emit(self, pairs) -> None:
        for color, depth in pairs:
            if depth is not None and not self._registered:
                self._pair = [depth, color]
                self._composer.invoke(depth)
                aligned = self._align.process(self._composed.wait_for_frame(5000).as_frameset())
                self._pair = []
                depth = aligned.get_depth_frame()
            self._pending.append(self._frame(color.as_video_frame(), depth.as_depth_frame() if depth else None))

    def _frame(self, color, depth) -> RealSenseFrame:
        return RealSenseFrame(
            timestamp_ns=ms_to_ns(color.get_timestamp()),
            timestamp_domain=color.get_frame_timestamp_domain().name,
            frame_number=int(color.get_frame_number()),
            rgb=_rgb_of(color),
            depth=_depth_mm_of(depth) if depth is not None else None,
            camera=self.camera, distortion=self.distortion, distortion_model=self.distortion_model)

    # ----- closing -----
    def close(self) -> None:
        """Stop streaming and release the device or file; safe to call more than once."""
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except RuntimeError:
                pass
            self._pipeline = None
        if self._playback is not None or self._sensors:
            self._closing.set()  # frame callbacks stop blocking, so that stopping cannot deadlock
            for sensor in self._sensors:
                for action in (sensor.stop, sensor.close) if self._started else (sensor.close,):
                    try:
                        action()
                    except RuntimeError:
                        pass
            while not self._queue.empty():
                self._queue.get_nowait()
            self._sensors = []
            self._playback = None
            self._ctx = None
        if self._pairer is not None:
            self._pairer.clear()
        self._pairer = None
        self._composer = self._composed = self._align = None
        self._registered = True
        self._pending.clear()
        self._started = False
        self._closing = threading.Event()
        self._played.clear()
        self._stopped.clear()
        self._all_started.clear()

    def __enter__(self) -> RealSenseCamera:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


# ----- synthetic recordings ------------------------------------------------------------------------------
def _rs_intrinsics(camera: CameraModel, distortion: Sequence[float]) -> rs.intrinsics:
    intr = rs.intrinsics()
    intr.width, intr.height = camera.width, camera.height
    intr.fx, intr.fy, intr.ppx, intr.ppy = (float(v) for v in camera.params)
    coeffs = [float(c) for c in distortion] + [0.0] * (5 - len(distortion))
    intr.model = rs.distortion.brown_conrady if any(coeffs) else rs.distortion.none
    intr.coeffs = coeffs
    return intr


def write_db3(path: str | Path, rgb: Sequence[np.ndarray], depth: Sequence[np.ndarray] | None = None,
              timestamps_ns: Sequence[int] | None = None, *, fps: int = 30, camera: CameraModel | None = None,
              distortion: Sequence[float] = (), depth_camera: CameraModel | None = None,
              depth_units_m: float = 0.001, bgr: bool = False, domain: str = "hardware_clock",
              serial: str = "000000000000", pace: bool = False) -> Path:
    """Record frames into a RealSense ``.db3`` with pyrealsense2 itself (a ``software_device`` recorded by
    ``rs.recorder``), e.g. to test playback or to turn frames from elsewhere into a RealSense recording.

    ``rgb``: (H, W, 3) uint8 frames (stored as rgb8, or bgr8 with ``bgr``); ``depth``: as many (h, w) uint16
    frames in units of ``depth_units_m``, seen by ``depth_camera`` (default: the colour camera itself, i.e.
    depth registered to colour; otherwise depth and colour share their origin and axes). ``camera``: pinhole
    colour intrinsics (default: 60 degree horizontal field of view, centred), ``distortion``: its Brown-Conrady
    coefficients [k1, k2, p1, p2, k3]. ``timestamps_ns`` (default: ``fps`` apart from 1 s) are microsecond
    multiples in ``domain``. The recording's own clock (what real-time playback paces by) is the time of
    writing: ``pace=True`` writes at the frames' rate, so that real-time playback reproduces it.
    """
    path = Path(path)
    n = len(rgb)
    if n == 0:
        raise ValueError("no frames to record")
    h, w = rgb[0].shape[:2]
    if any(f.shape != (h, w, 3) or f.dtype != np.uint8 for f in rgb):
        raise ValueError(f"colour frames must all be ({h}, {w}, 3) uint8")
    camera = camera or CameraModel(LINEAR, [w / (2 * math.tan(math.radians(30)))] * 2 + [(w - 1) / 2, (h - 1) / 2],
                                   w, h)
    if (camera.width, camera.height) != (w, h):
        raise ValueError(f"camera is {camera.width}x{camera.height}, frames are {w}x{h}")
    registered = depth_camera is None
    depth_camera = depth_camera or camera
    if depth is not None:
        if len(depth) != n:
            raise ValueError(f"{n} colour frames but {len(depth)} depth frames")
        shape = (depth_camera.height, depth_camera.width)
        if any(d.shape != shape or d.dtype != np.uint16 for d in depth):
            raise ValueError(f"depth frames must all be {shape} uint16")
    if timestamps_ns is None:
        timestamps_ns = [1_000_000_000 + round(i * 1e9 / fps) // 1000 * 1000 for i in range(n)]
    if len(timestamps_ns) != n or any(b <= a for a, b in zip(timestamps_ns, timestamps_ns[1:], strict=False)):
        raise ValueError("need one strictly increasing timestamp per frame")
    if path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)

    device = rs.software_device()
    device.register_info(rs.camera_info.name, "HumanEgo synthetic RealSense")
    device.register_info(rs.camera_info.serial_number, serial)
    streams = []  # (sensor, profile, bpp, frames)
    color_sensor = device.add_sensor("RGB Camera")
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps = rs.stream.color, 0, 1, w, h, fps
    vs.bpp, vs.fmt, vs.intrinsics = 3, (rs.format.bgr8 if bgr else rs.format.rgb8), _rs_intrinsics(camera, distortion)
    color_profile = color_sensor.add_video_stream(vs)
    color_frames = [np.ascontiguousarray(f[:, :, ::-1] if bgr else f) for f in rgb]
    if depth is not None:
        depth_sensor = device.add_sensor("Stereo Module")
        depth_sensor.add_read_only_option(rs.option.depth_units, float(depth_units_m))
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = rs.stream.depth, 0, 0
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = depth_camera.width, depth_camera.height, fps, 2, rs.format.z16
        vs.intrinsics = _rs_intrinsics(depth_camera, distortion if registered else ())
        depth_profile = depth_sensor.add_video_stream(vs)
        identity = rs.extrinsics()
        identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        depth_profile.register_extrinsics_to(color_profile, identity)
        streams.append((depth_sensor, depth_profile, 2, [np.ascontiguousarray(d) for d in depth]))
    streams.append((color_sensor, color_profile, 3, color_frames))

    recorder = rs.recorder(str(path), device)
    for sensor, profile, _, _ in streams:
        sensor.open(profile)
        sensor.start(lambda frame: None)
    ts_domain = getattr(rs.timestamp_domain, domain)
    start = time.monotonic()
    for i, t_ns in enumerate(timestamps_ns):
        if pace:
            time.sleep(max(0.0, (t_ns - timestamps_ns[0]) * 1e-9 - (time.monotonic() - start)))
        for sensor, profile, bpp, frames in streams:
            frame = rs.software_video_frame()
            frame.pixels = frames[i]  # copied by pyrealsense2
            frame.bpp = bpp
            frame.stride = frames[i].shape[1] * bpp
            frame.timestamp = t_ns / 1_000_000  # correctly rounded
            frame.domain = ts_domain
            frame.frame_number = i + 1
            frame.profile = profile.as_video_stream_profile()
            if bpp == 2:
                frame.depth_units = float(depth_units_m)
            sensor.on_video_frame(frame)
    for sensor, *_ in streams:
        sensor.stop()
        sensor.close()
    del recorder  # the file is complete once the recorder is gone
    return path
