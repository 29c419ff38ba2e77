"""Fixtures of the views tests: small ONNX models with the exact signatures of the public SAM2 and LaMa exports
(simple functions of their inputs, so that loading, pre- and post-processing run for real), and a generated
serve_bread recording."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

# SAM2 test decoder: mask k is "bright in the image" within SAM2_TEST_RADII[k] (pixels of the 1024 input) of a
# positive prompt; its predicted IoU is SAM2_TEST_IOU[k]: a masker that picks the best one gets discs of
# 40 px (of the 1024 input) around the prompts.
SAM2_TEST_RADII = (8.0, 40.0, 280.0)
SAM2_TEST_IOU = (0.3, 0.9, 0.1)
# LaMa test model: fills the hole with this colour (0..1), answers in 0..255 like Carve's export.
LAMA_TEST_FILL = (0.2, 0.4, 0.6)


def _export(module, args, path: Path, inputs: list[str], outputs: list[str], dynamic: dict | None = None) -> Path:
    import torch

    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic or {}, opset_version=17)
    return path


def make_sam2_models(folder: Path) -> tuple[Path, Path]:
    """(encoder, decoder) ONNX files with samexporter's SAM2 signature."""
    import torch
    import torch.nn.functional as F

    class Encoder(torch.nn.Module):
        def forward(self, image):
            grey = image.mean(dim=1, keepdim=True)  # ImageNet-normalised: > 0 for bright pixels
            return (F.avg_pool2d(grey, 4).repeat(1, 32, 1, 1), F.avg_pool2d(grey, 8).repeat(1, 64, 1, 1),
                    F.avg_pool2d(grey, 16).repeat(1, 256, 1, 1))

    class Decoder(torch.nn.Module):
        def forward(self, image_embed, high_res_feats_0, high_res_feats_1, point_coords, point_labels, mask_input,
                    has_mask_input):
            centres = (torch.arange(256, dtype=torch.float32) + 0.5) * 4.0  # low-res cells in input pixels
            dx = centres.view(1, 1, 256) - point_coords[0, :, 0].view(-1, 1, 1)
            dy = centres.view(1, 256, 1) - point_coords[0, :, 1].view(-1, 1, 1)
            distance = torch.sqrt(dx * dx + dy * dy) + 1e4 * (point_labels[0] < 0.5).float().view(-1, 1, 1)
            nearest = distance.min(dim=0).values  # to the nearest positive prompt
            bright = high_res_feats_0[0, 0]
            masks = torch.stack([torch.minimum(bright, (r - nearest) / 100.0) for r in SAM2_TEST_RADII])[None]
            unused = 0.0 * (image_embed.mean() + high_res_feats_1.mean() + mask_input.mean() + has_mask_input.sum())
            return masks + unused, torch.tensor([SAM2_TEST_IOU]) + unused

    encoder = _export(Encoder(), (torch.zeros(1, 3, 1024, 1024),), folder / "sam2_encoder.onnx", ["image"],
                      ["high_res_feats_0", "high_res_feats_1", "image_embed"])
    decoder_args = (torch.zeros(1, 256, 64, 64), torch.zeros(1, 32, 256, 256), torch.zeros(1, 64, 128, 128),
                    torch.zeros(1, 5, 2), torch.ones(1, 5), torch.zeros(1, 1, 256, 256), torch.zeros(1))
    decoder = _export(Decoder(), decoder_args, folder / "sam2_decoder.onnx",
                      ["image_embed", "high_res_feats_0", "high_res_feats_1", "point_coords", "point_labels",
                       "mask_input", "has_mask_input"], ["masks", "iou_predictions"],
                      {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    return encoder, decoder


def make_lama_model(path: Path, output_max: float = 255.0) -> Path:
    """An ONNX file with Carve/LaMa-ONNX's signature that fills the hole with LAMA_TEST_FILL."""
    import torch

    class Lama(torch.nn.Module):
        def forward(self, image, mask):
            fill = torch.tensor(LAMA_TEST_FILL).view(1, 3, 1, 1)
            return (image * (1.0 - mask) + fill * mask) * output_max

    return _export(Lama(), (torch.zeros(1, 3, 512, 512), torch.zeros(1, 1, 512, 512)), path, ["image", "mask"],
                   ["output"])


@pytest.fixture(scope="session")
def sam2_models(tmp_path_factory) -> tuple[Path, Path]:
    return make_sam2_models(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="session")
def lama_model(tmp_path_factory) -> Path:
    return make_lama_model(tmp_path_factory.mktemp("lama") / "lama.onnx")


@pytest.fixture(scope="session")
def serve_bread_recording(tmp_path_factory) -> Path:
    """One simulated serve_bread demonstration, 240x240 fisheye frames with ground truth."""
    from humanego_sim.generate_demos import generate

    out = tmp_path_factory.mktemp("views_recording")
    generate("serve_bread", 1, out, width=240, height=240, progress=False)
    return out / "demo_0000"
