"""ONNX models loaded with onnxruntime, after checking that the file is the model the caller expects.

Model weights (SAM2, LaMa, ...) plug in through configuration: a user points a config key at a file they
exported or downloaded. The usual failure is the wrong file (another export, another variant, a truncated
download), and onnxruntime's own error then comes much later, from deep inside ``run``, about a tensor
nobody named. :class:`OnnxModel` checks the file's inputs and outputs against the expected
:class:`TensorSpec` list at load time and says, in one message, which file, what it is for, what was
expected and what the file has. Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_INTRA_OP_THREADS = 2
# onnxruntime's type strings ("tensor(float)") as numpy dtype names.
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(bool)": "bool"}


class OnnxModelError(ValueError):
    """A model file that is missing, unreadable or not the model expected (the message says which and why)."""


@dataclass(frozen=True)
class TensorSpec:
    """An expected model input or output. ``shape`` entries: an int is a fixed size; None or a string is a
    dynamic dimension (any size, and any symbolic or fixed value in the file)."""

    name: str
    shape: tuple
    dtype: str = "float32"

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"

    def mismatch(self, shape, dtype: str) -> str | None:
        """Why a tensor of the file with this name does not fit, or None."""
        if dtype != self.dtype:
            return f"dtype {dtype}, expected {self.dtype}"
        if len(shape) != len(self.shape):
            return f"rank {len(shape)}, expected {len(self.shape)}"
        for axis, (want, got) in enumerate(zip(self.shape, shape, strict=True)):
            # a symbolic or unknown dimension in the file accepts any size, so it fits a fixed expectation too
            if isinstance(want, int) and isinstance(got, int) and want != got:
                return f"dimension {axis} is {got}, expected {want}"
        return None


def _describe_file_tensors(tensors) -> str:
    out = []
    for t in tensors:
        dims = ", ".join("?" if d is None else str(d) for d in t.shape)
        out.append(f"{t.name} [{dims}] {_ORT_DTYPES.get(t.type, t.type)}")
    return "; ".join(out) or "none"


def default_providers() -> list[str]:
    """CUDA first where this onnxruntime build has it, CPU always (the fallback for unsupported ops)."""
    available = ort.get_available_providers()
    return ([CUDA] if CUDA in available else []) + [CPU]


class OnnxModel:
    """An onnxruntime session of ``path`` whose inputs and outputs were checked against the expected ones.

    ``what`` says what the model is for (it goes into every error message, e.g. "SAM2 image encoder
    (config key arm_mask.sam2_encoder)"). ``providers`` default: :func:`default_providers`.
    """

    def __init__(self, path: str | Path, inputs: list[TensorSpec], outputs: list[TensorSpec], what: str,
                 providers: list[str] | None = None, intra_op_threads: int = DEFAULT_INTRA_OP_THREADS):
        self.path, self.what = Path(path), what
        self.inputs, self.outputs = list(inputs), list(outputs)
        expected = (f"expected inputs: {'; '.join(s.describe() for s in self.inputs)}; "
                    f"expected outputs: {'; '.join(s.describe() for s in self.outputs)}")
        if not self.path.is_file():
            problem = "does not exist" if not self.path.exists() else "is not a regular file"
            raise OnnxModelError(f"{self.path}: {problem}; it should be the {what} ({expected})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                providers=providers or default_providers())
        except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise OnnxModelError(f"{self.path}: not a loadable ONNX model ({type(e).__name__}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); it should be the "
                                 f"{what} ({expected})") from None
        problems = (self._compare("input", self.inputs, self.session.get_inputs())
                    + self._compare("output", self.outputs, self.session.get_outputs()))
        if problems:
            raise OnnxModelError(f"{self.path}: not the {what}: {'; '.join(problems)}. {expected}. "
                                 f"The file has inputs: {_describe_file_tensors(self.session.get_inputs())}; "
                                 f"outputs: {_describe_file_tensors(self.session.get_outputs())}")

    @staticmethod
    def _compare(kind: str, expected: list[TensorSpec], actual) -> list[str]:
        by_name = {t.name: t for t in actual}
        problems = []
        for spec in expected:
            tensor = by_name.get(spec.name)
            if tensor is None:
                problems.append(f"no {kind} named '{spec.name}'")
                continue
            why = spec.mismatch(tensor.shape, _ORT_DTYPES.get(tensor.type, tensor.type))
            if why:
                problems.append(f"{kind} '{spec.name}' has {why}")
        if kind == "input":  # every input of the file must be fed, so an unexpected one is an error too
            known = {s.name for s in expected}
            problems += [f"unexpected input '{t.name}'" for t in actual if t.name not in known]
        return problems

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses (CUDA is dropped where it failed to initialise)."""
        return self.session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The expected outputs by name for ``feeds`` (every expected input, cast to its dtype)."""
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise ValueError(f"{self.what}: missing inputs {', '.join(missing)}")
        arrays = {s.name: np.ascontiguousarray(feeds[s.name], dtype=s.dtype) for s in self.inputs}
        for spec in self.inputs:
            why = spec.mismatch(arrays[spec.name].shape, spec.dtype)
            if why:
                raise ValueError(f"{self.what}: input '{spec.name}' has {why}")
        names = [s.name for s in self.outputs]
        out = dict(zip(names, self.session.run(names, arrays), strict=True))
        for name, value in out.items():
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise ValueError(f"{self.what} ({self.path}): output '{name}' contains NaN or inf")
        return out
