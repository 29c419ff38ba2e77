"""humanego_control: the robot side, between policy and joints.

Room for: IK/retargeting with pinocchio (``ik_retarget``: action chunks -> joint trajectories), the
trajectory controller with its safety layer (limits, workspace, watchdog, e-stop, heartbeat), the
extrinsics check and hand-eye calibration, and visualisation (paths, markers).

Here now: ``heartbeat``, the operator's dead-man signal the controller requires to move.
"""
