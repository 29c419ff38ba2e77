"""The per-recording preprocessing report: ``report.json`` (figures) and ``report.png`` (trajectories).

A person checking a run wants to see at a glance what was kept and why the rest was dropped, and whether
the hand and object trajectories look plausible: the plot shows the hand and object positions over time
with the kept frames shaded and the grasp state, a top view of the paths, and a timeline of drop reasons.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
import numpy as np  # noqa: E402

from humanego_training.stage_cache import write_json_atomic  # noqa: E402

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"


def write(folder: Path, result, rec, hands, seg, objects: dict, reasons: np.ndarray, window: np.ndarray,
          extra: dict) -> Path:
    """Write report.json and report.png into ``folder``; returns the JSON's path."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = reasons == ""
    counts = Counter(str(r) for r in reasons if r)
    frames_in = {"hands": rec.num_frames, "phases": rec.num_frames, "frames": len(window), "masks": len(window),
                 "objects": len(window), "write": int(kept.sum())}
    stages = {name: {"seconds": round(s, 3), "frames": frames_in.get(name, 0),
                     "frames_per_s": round(frames_in.get(name, 0) / s, 1) if s > 0 else None}
              for name, s in result.stage_seconds.items()}
    data = {
        "recording": str(rec.root), "kind": rec.kind, "frames": rec.num_frames, "fps": round(rec.fps, 3),
        "kept": int(kept.sum()), "dropped": dict(sorted(counts.items())),
        "hand": {"side": hands.side, "reasons": hands.counts(), "gap_filled_frames": int(np.sum(hands.filled)),
                 "grasp_frames": int(np.sum(hands.grasp >= 0.5))},
        "manipulation_window": {"start": int(seg.start), "stop": int(seg.stop), "reason": seg.reason,
                                "grasp_intervals": [list(map(int, iv)) for iv in seg.grasp_intervals]},
        "objects": {name: {"dynamic": bool(t.is_dynamic), "valid_frames": int(np.sum(t.valid)),
                           "keypoints": int(len(t.keypoints_world)),
                           "reprojection_error_px": _finite_or_none(t.reprojection_error_px)}
                    for name, t in objects.items()},
        "stages": stages, "seconds": round(result.seconds, 2), **extra,
    }
    path = folder / REPORT_JSON
    write_json_atomic(path, data)
    _plot(folder / REPORT_PNG, rec, hands, objects, reasons, window)
    return path


def _finite_or_none(value) -> float | None:
    value = float(value)
    return round(value, 3) if np.isfinite(value) else None


def _plot(path: Path, rec, hands, objects: dict, reasons: np.ndarray, window: np.ndarray) -> None:
    t = (rec.frame_t_ns - rec.frame_t_ns[0]) * 1e-9
    kept = reasons == ""
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), gridspec_kw={"height_ratios": [3, 3, 3, 1]})
    hand_p = np.where(hands.valid[:, None], hands.T_world_hand[:, :3, 3], np.nan)
    ax = axes[0]
    for k, axis in enumerate("xyz"):
        ax.plot(t, hand_p[:, k], label=f"hand {axis}")
    ax.plot(t, np.where(hands.valid, hands.grasp, np.nan) * 0.1 + np.nanmin(hand_p, initial=0.0), "k--",
            label="grasp (offset)")
    _shade(ax, t, kept)
    ax.set_ylabel("hand position (m, world)")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax = axes[1]
    for name, track in objects.items():
        p = np.full((len(t), 3), np.nan)
        p[window] = np.where(track.valid[:, None], track.T_world_obj[:, :3, 3], np.nan)
        for k, axis in enumerate("xyz"):
            ax.plot(t, p[:, k], label=f"{name} {axis}")
    _shade(ax, t, kept)
    ax.set_ylabel("object position (m, world)")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    ax = axes[2]
    ax.plot(hand_p[:, 0], hand_p[:, 1], label="hand")
    for name, track in objects.items():
        q = track.T_world_obj[track.valid, :3, 3]
        ax.plot(q[:, 0], q[:, 1], ".", ms=3, label=name)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("world x (m)")
    ax.set_ylabel("world y (m)")
    ax.set_title("top view", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[3]
    labels = sorted({str(r) for r in reasons})
    codes = np.array([labels.index(str(r)) for r in reasons])
    ax.imshow(codes[None, :], aspect="auto", cmap="tab20", interpolation="nearest",
              extent=(t[0], t[-1] if len(t) > 1 else 1.0, 0, 1))
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=plt.cm.tab20(i / max(len(labels) - 1, 1)))
               for i in range(len(labels))]
    ax.legend(handles, [lbl or "kept" for lbl in labels], fontsize=7, ncol=3, loc="upper center",
              bbox_to_anchor=(0.5, -0.6))
    fig.suptitle(f"{rec.root.name}: {int(kept.sum())}/{len(kept)} frames kept")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _shade(ax, t: np.ndarray, kept: np.ndarray) -> None:
    """Grey bands over the kept frames."""
    edges = np.flatnonzero(np.diff(np.r_[0, kept.astype(int), 0]))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        ax.axvspan(t[start], t[min(stop, len(t)) - 1], color="0.9", zorder=0)
