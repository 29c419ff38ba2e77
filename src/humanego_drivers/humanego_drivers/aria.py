"""Project Aria glasses as camera sources: replay of a ``.vrs`` recording (+ its MPS outputs), and live
streaming through projectaria-client-sdk.

Frames: ``camera`` = the RGB camera (``aria_rgb_optical``), optionally ``slam_left`` / ``slam_right``
(``aria_slam_left_optical``, ...), all timestamped in device time (ns) as recorded, which is also the
time base of MPS. Live streaming needs the SDK (``pip install projectaria-client-sdk==2.5.1 --no-deps``
plus its login package, and the glasses paired with ``aria auth pair``); it is not part of the default
set-up, and without it :class:`AriaLiveStream` says so.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from projectaria_tools.core import calibration as aria_calibration

from humanego_core.camera_models import CameraModel
from humanego_drivers.mps import find_mps_files, read_closed_loop_trajectory, read_hand_tracking
from humanego_drivers.replay import CameraStream, ReplaySource
from humanego_drivers.vrs import RGB_LABEL, SLAM_LABELS, VrsReader

# Topic namespace and optical frame of each Aria camera.
STREAMS = {RGB_LABEL: ("camera", "aria_rgb_optical"),
           SLAM_LABELS[0]: ("slam_left", "aria_slam_left_optical"),
           SLAM_LABELS[1]: ("slam_right", "aria_slam_right_optical")}
SDK_HINT = ("live streaming needs projectaria-client-sdk, which is not installed: "
            "pip install projectaria-client-sdk==2.5.1 projectaria-login --no-deps, then pair the glasses "
            "with 'aria auth pair' (https://facebookresearch.github.io/projectaria_tools/docs/ARK/sdk)")


class AriaError(RuntimeError):
    """The glasses cannot be reached or streamed from (the SDK missing, no device, streaming failed)."""


def vrs_stream(reader: VrsReader) -> CameraStream:
    name, frame_id = STREAMS[reader.label]

    def frames(start: int) -> Iterator[np.ndarray]:
        for index in range(start, reader.num_frames):
            yield reader.read(index)

    return CameraStream(name=name, frame_id=frame_id, camera=reader.camera_model, timestamps_ns=reader.timestamps_ns,
                        frames=frames, encoding="rgb8" if reader.label == RGB_LABEL else "mono8")


def open_vrs_replay(vrs: str | Path, mps: str | Path | None = None, slam: bool = False,
                    allow_truncated: bool = False) -> ReplaySource:
    """The RGB camera (and with ``slam`` the two SLAM cameras) of ``vrs``; with ``mps``, the MPS output folder
    of the same recording, its closed-loop trajectory and hand tracking (whichever it has)."""
    labels = (RGB_LABEL, *SLAM_LABELS) if slam else (RGB_LABEL,)
    streams = [vrs_stream(VrsReader(vrs, label, allow_truncated)) for label in labels]
    source = ReplaySource(description=str(vrs), streams=streams)
    if mps:
        files = find_mps_files(mps)
        source.trajectory = files.trajectory_path and read_closed_loop_trajectory(files.trajectory_path)
        source.hands = files.hand_tracking_path and read_hand_tracking(files.hand_tracking_path)
        source.check_mps()
    return source


@dataclass(frozen=True)
class LiveFrame:
    label: str            # camera label (camera-rgb, camera-slam-left, ...)
    t_ns: int             # capture time, device clock
    image: np.ndarray


class AriaLiveStream:
    """Frames streamed from the glasses by projectaria-client-sdk (Aria Gen1 ``aria.sdk``).

    ``connect`` reaches the glasses (over USB via adb, or at ``device_ip``), starts streaming with the
    profile and interface asked for, and subscribes to RGB (and SLAM) images; frames arrive on a small
    queue (the oldest are dropped when the consumer is slower than the glasses). Not exercised without
    glasses: on this project's machines only the missing-SDK path runs.
    """

    def __init__(self, interface: str = "usb", profile: str = "profile18", device_ip: str = "", slam: bool = False,
                 queue_size: int = 4):
        try:
            import aria.sdk as sdk  # noqa: PLC0415 (optional dependency: imported only for live streaming)
        except ImportError:
            raise AriaError(SDK_HINT) from None
        if interface not in ("usb", "wifi"):
            raise ValueError(f"interface must be usb or wifi, got {interface!r}")
        self.sdk = sdk
        self.interface, self.profile, self.device_ip, self.slam = interface, profile, device_ip, slam
        self.frames: queue.Queue[LiveFrame] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self._lock = threading.Lock()
        self._device_client = self._device = self._client = None
        self.calibration = None

    def connect(self) -> None:
        sdk = self.sdk
        try:
            client = sdk.DeviceClient()
            config = sdk.DeviceClientConfig()
            if self.device_ip:
                config.ip_v4_address = self.device_ip
            client.set_client_config(config)
            device = client.connect()
            manager = device.streaming_manager
            streaming = sdk.StreamingConfig()
            streaming.profile_name = self.profile
            if self.interface == "usb":
                streaming.streaming_interface = sdk.StreamingInterface.Usb
            streaming.security_options.use_ephemeral_certs = True
            manager.streaming_config = streaming
            manager.start_streaming()
            self.calibration = aria_calibration.device_calibration_from_json_string(manager.sensors_calibration())
            subscriber = manager.streaming_client
            config = subscriber.subscription_config
            rgb = sdk.StreamingDataType.Rgb
            config.subscriber_data_type = rgb | sdk.StreamingDataType.Slam if self.slam else rgb
            config.message_queue_size[sdk.StreamingDataType.Rgb] = 1
            config.security_options.use_ephemeral_certs = True
            subscriber.subscription_config = config
            subscriber.set_streaming_client_observer(self)
            subscriber.subscribe()
        except Exception as exc:  # the SDK raises plain RuntimeErrors for every failure
            where = f"at {self.device_ip}" if self.device_ip else f"over {self.interface}"
            raise AriaError(f"cannot stream from the Aria glasses {where}: {exc}") from exc
        self._device_client, self._device, self._client = client, device, subscriber

    def camera_model(self, label: str, width: int, height: int) -> CameraModel:
        """The factory calibration of ``label`` for images of ``width`` x ``height`` (streaming profiles may
        send the RGB camera binned)."""
        if self.calibration is None:
            raise AriaError("not connected")
        model = CameraModel.from_projectaria(self.calibration.get_camera_calib(label))
        return model if model.width == width else model.rescale(width, height, width / model.width)

    # Called by the SDK from its own thread.
    def on_image_received(self, image: np.ndarray, record) -> None:
        label = {self.sdk.CameraId.Rgb: RGB_LABEL, self.sdk.CameraId.Slam1: SLAM_LABELS[0],
                 self.sdk.CameraId.Slam2: SLAM_LABELS[1]}.get(record.camera_id)
        if label is None:
            return
        frame = LiveFrame(label, int(record.capture_timestamp_ns), np.ascontiguousarray(image))
        with self._lock:
            if self.frames.full():
                self.frames.get_nowait()
                self.dropped += 1
            self.frames.put_nowait(frame)

    def close(self) -> None:
        if self._client is not None:
            self._client.unsubscribe()
        if self._device is not None:
            self._device.streaming_manager.stop_streaming()
            self._device_client.disconnect(self._device)
        self._device_client = self._device = self._client = None
