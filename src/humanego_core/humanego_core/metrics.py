"""Offline action metrics under the names of DESIGN.md section 6 (HumanEgo's definitions).

Inputs are de-normalised chunks: predicted and target poses (N, H, 4, 4) in the reference frame
(metres), grasp (N, H) in [0, 1], a validity mask (N, H) (False past the end of a demonstration,
where targets repeat the last pose), done probabilities and labels (N,). Step numbers are 1-based:
step 1 is the first future step (t+1), step K = ``k`` is usually the horizon's last.

- ``pos_err_k1_m``, ``pos_err_kK_m``: mean Euclidean position error (m) over the valid samples at step 1 / K.
- ``rot_err_k1_deg``, ``rot_err_kK_deg``: mean geodesic angle ``acos((tr(R_pred^T R_target) - 1) / 2)`` (deg).
- ``grasp_f1_k1``, ``grasp_f1_kK``: F1 of ``pred >= 0.5`` against ``target >= 0.5`` over the valid samples at
  that step. Edge cases: no positive label and no positive prediction -> 1.0 (nothing to find, nothing
  claimed: perfect agreement); otherwise zero true positives -> 0.0.
- ``*_w``: horizon-weighted over steps 1..H, weights ``w_h = (H - h + 1) / sum`` (linearly decreasing from
  step 1 to step H). The near steps are the ones the robot executes before the next chunk replaces them
  (receding horizon / temporal ensembling), so they count most, yet the far steps still count. Errors are
  the weighted mean over valid (sample, step) pairs, ``sum(w * e * valid) / sum(w * valid)``; ``grasp_f1_w``
  is F1 computed from weighted true/false positive and false negative counts.
- ``done_acc``: accuracy of ``done_prob >= 0.5`` against ``done_label >= 0.5`` over all N samples.
- ``zero_state_ratio``: fraction of samples whose predicted chunk stands still - every valid predicted
  position within ``ZERO_STATE_RADIUS_M`` of the chunk's first predicted position. A policy that collapses to
  "stay where you are" scores well on the near steps while doing nothing; this ratio exposes it (compare
  with the same ratio on the targets, returned as ``zero_state_ratio_target``).

A metric with no valid (sample, step) pair to average raises ValueError, as do NaN/inf, wrong shapes,
non-rigid poses and a step K outside 1..H.
"""

from __future__ import annotations

import numpy as np

from humanego_core import geometry

ZERO_STATE_RADIUS_M = 0.005
THRESHOLD = 0.5
METRIC_NAMES = ("pos_err_k1_m", "pos_err_kK_m", "pos_err_w_m", "rot_err_k1_deg", "rot_err_kK_deg", "rot_err_w_deg",
                "grasp_f1_k1", "grasp_f1_kK", "grasp_f1_w", "done_acc", "zero_state_ratio")


def horizon_weights(horizon: int) -> np.ndarray:
    """(H,) weights of the ``*_w`` metrics: linearly decreasing from step 1 to step H, summing to 1."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    w = np.arange(horizon, 0, -1, dtype=np.float64)
    return w / w.sum()


def f1_score(pred_positive, label_positive, weights=None) -> float:
    """(Weighted) F1 of boolean predictions against boolean labels; 1.0 when both have no positive."""
    pred = np.asarray(pred_positive, dtype=bool)
    label = np.asarray(label_positive, dtype=bool)
    w = np.ones(pred.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    tp = float(np.sum(w * (pred & label)))
    fp = float(np.sum(w * (pred & ~label)))
    fn = float(np.sum(w * (~pred & label)))
    if tp + fp + fn == 0.0:
        return 1.0
    return 2.0 * tp / (2.0 * tp + fp + fn)


def _finite(x, name: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _weighted_mean(errors: np.ndarray, weights: np.ndarray, name: str) -> float:
    total = weights.sum()
    if total <= 0:
        raise ValueError(f"{name}: no valid target to average")
    return float(np.sum(errors * weights) / total)


def zero_state_mask(T, valid, radius: float = ZERO_STATE_RADIUS_M) -> np.ndarray:
    """(N,) True where every valid position of a chunk lies within ``radius`` of its first position."""
    p = np.asarray(T, dtype=np.float64)[..., :3, 3]
    dist = np.linalg.norm(p - p[:, :1], axis=-1)
    return np.all((dist <= radius) | ~np.asarray(valid, dtype=bool), axis=1)


def action_metrics(pred_T, pred_grasp, target_T, target_grasp, valid, done_prob, done_label, k: int) -> dict:
    """DESIGN.md section 6 metrics (see the module docstring), plus ``zero_state_ratio_target``."""
    pred_T = np.asarray(pred_T, dtype=np.float64)
    if pred_T.ndim != 4 or pred_T.shape[2:] != (4, 4) or pred_T.shape[0] == 0 or pred_T.shape[1] == 0:
        raise ValueError(f"pred_T must have shape (N, H, 4, 4) with N, H >= 1, got {pred_T.shape}")
    n, horizon = pred_T.shape[:2]
    try:
        pred_T = geometry.check_transform(pred_T, "pred_T", tol=1e-4)
        target_T = geometry.check_transform(_finite(target_T, "target_T", (n, horizon, 4, 4)), "target_T", tol=1e-4)
    except geometry.GeometryError as exc:
        raise ValueError(str(exc)) from None
    pred_grasp = _finite(pred_grasp, "pred_grasp", (n, horizon))
    target_grasp = _finite(target_grasp, "target_grasp", (n, horizon))
    done_prob = _finite(done_prob, "done_prob", (n,))
    done_label = _finite(done_label, "done_label", (n,))
    valid = np.asarray(valid)
    if valid.shape != (n, horizon) or valid.dtype != bool:
        raise ValueError(f"valid must be a bool array of shape {(n, horizon)}, got {valid.dtype} {valid.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= horizon:
        raise ValueError(f"k must be a step number in 1..{horizon}, got {k!r}")

    pos_err = np.linalg.norm(pred_T[..., :3, 3] - target_T[..., :3, 3], axis=-1)
    rot_err = np.degrees(geometry.geodesic_angle(pred_T[..., :3, :3], target_T[..., :3, :3]))
    pred_pos = pred_grasp >= THRESHOLD
    label_pos = target_grasp >= THRESHOLD
    validf = valid.astype(np.float64)
    w = horizon_weights(horizon)[None, :] * validf
    out = {}
    for suffix, step in (("k1", 0), ("kK", k - 1)):
        if not valid[:, step].any():
            raise ValueError(f"no valid target at step {step + 1}: cannot compute the *_{suffix} metrics")
        sel = valid[:, step]
        out[f"pos_err_{suffix}_m"] = float(pos_err[sel, step].mean())
        out[f"rot_err_{suffix}_deg"] = float(rot_err[sel, step].mean())
        out[f"grasp_f1_{suffix}"] = f1_score(pred_pos[sel, step], label_pos[sel, step])
    out["pos_err_w_m"] = _weighted_mean(pos_err, w, "pos_err_w_m")
    out["rot_err_w_deg"] = _weighted_mean(rot_err, w, "rot_err_w_deg")
    out["grasp_f1_w"] = f1_score(pred_pos, label_pos, w)
    out["done_acc"] = float(np.mean((done_prob >= THRESHOLD) == (done_label >= THRESHOLD)))
    out["zero_state_ratio"] = float(zero_state_mask(pred_T, valid).mean())
    out["zero_state_ratio_target"] = float(zero_state_mask(target_T, valid).mean())
    return {name: out[name] for name in (*METRIC_NAMES, "zero_state_ratio_target")}
