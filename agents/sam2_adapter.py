"""Every use of SAM 2's private internals, in one place, written against one sam2 release (SAM2_VERSION).

- SAM 2's video API builds its inference state only from a video path (`init_state` decodes a JPEG folder or an
  mp4 again); we hold the decoded frames already, so we build that state ourselves: its layout, and the warm-up of
  its feature cache through the private `SAM2VideoPredictor._get_image_feature`, mirror `init_state`.
- The image predictor assumes 1024 px inputs unless its private `_bb_feat_sizes` is set for our image size.
- The hub file of each checkpoint comes from sam2's own table, `sam2.build_sam.HF_MODEL_ID_TO_FILENAMES`.

Any sam2 release may change these without notice, so the adapter refuses every other version (Sam2VersionError),
and tests/agents/test_sam2_adapter.py fails when the installed sam2 is not SAM2_VERSION or a name used here is gone.
Moving to a new sam2: compare its `init_state` with init_state_from_frames, then change SAM2_VERSION (and the pin
in pyproject.toml).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SAM2_VERSION = "1.1.0"  # the sam2 release this module mirrors (pyproject.toml pins it)


class Sam2VersionError(RuntimeError):
    """The installed sam2 is not the release this adapter was written against."""


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("sam2")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache  # once per process when it passes (a failure is not cached: it raises again)
def require_version() -> None:
    found = installed_version()
    if found != SAM2_VERSION:
        raise Sam2VersionError(
            f"sam2 {found or '(not installed)'} is installed, but agents/sam2_adapter.py uses private parts of sam2 "
            f"{SAM2_VERSION}: install sam2=={SAM2_VERSION} (docs/install.md), or port the adapter to {found} and "
            "change its SAM2_VERSION"
        )


def checkpoint_filename(repo: str) -> str:
    """The checkpoint's file name in hub repository `repo` (e.g. 'facebook/sam2.1-hiera-base-plus')."""
    require_version()
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    return HF_MODEL_ID_TO_FILENAMES[repo][1]  # (config, checkpoint)


def image_predictor(video_predictor: Any, image_size: int) -> Any:
    """A SAM2ImagePredictor sharing the video predictor's weights, for inputs of `image_size` px."""
    require_version()
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(video_predictor)
    s = image_size  # the backbone's feature maps are 1/4, 1/8 and 1/16 of the input
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return predictor


def init_state_from_frames(
    predictor: Any, images: torch.Tensor, height: int, width: int, offload: bool
) -> dict[str, Any]:
    """SAM 2's inference state for frames we decoded ourselves: `images` (T, 3, S, S), normalised as SAM 2's loader
    does; `height` and `width` of the video, to which masks are scaled back; `offload`: the frames stay on the CPU.
    What `SAM2VideoPredictor.init_state` builds (no state offload, frames already loaded), without its decoding."""
    require_version()
    device = predictor.device
    state: dict[str, Any] = {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": offload,
        "offload_state_to_cpu": False,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    predictor._get_image_feature(state, frame_idx=0, batch_size=1)  # init_state's warm-up of frame 0's features
    return state
