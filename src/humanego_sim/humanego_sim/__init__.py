"""humanego_sim: the embedded default world (DESIGN.md section 7).

Room for: the MuJoCo tabletop scenes and tasks (serve_bread, ...), the simulated robot arm built on
the URDFs in ``urdf/`` with position actuators, the ``sim_robot`` node (joint states, ego camera,
TF, reset service), the scripted human demonstrator and the writer of synthetic recordings in the
Aria/MPS formats (``generate_demos``), and the ground-truth oracle controller.
"""
