"""humanego_perception: embodiment-agnostic views, used offline and online alike.

Room for: arm masking (hand-landmark + colour segmentation, SAM2 ONNX, robot self-mask rendered
from the URDF), inpainting (OpenCV, LaMa ONNX), the virtual gripper overlay and object keypoints,
hand/object 3D state estimation, and the ``clean_view`` node that publishes ``camera/image_clean``.
"""
