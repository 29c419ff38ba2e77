"""humanego_policy: policies and their runtime on the robot.

Room for: the flow-matching and ACT models (torch), the exported-bundle runtime (onnxruntime with
CUDA when present, torch as fallback), and the ``policy`` node: ``camera/image_clean`` + ``ict`` in,
``action_chunk`` out, plus the ``replay`` policy that plays a recorded hand trajectory.
"""
