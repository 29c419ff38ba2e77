"""Integration of a flow from noise, shared by torch (training, the torch backend) and the onnxruntime backend;
no torch import, so that onnxruntime deployments do not need it."""

from __future__ import annotations

from collections.abc import Callable


def euler_integrate(velocity: Callable, x0, num_steps: int):
    """``x`` from ``t = 0`` to ``t = 1``: ``x += dt * velocity(x, t)`` at ``t = k * dt``, ``dt = 1 / num_steps``.
    Works on torch tensors and numpy arrays alike (the onnxruntime backend runs the same loop)."""
    x = x0
    dt = 1.0 / num_steps
    for k in range(num_steps):
        x = x + dt * velocity(x, k * dt)
    return x
