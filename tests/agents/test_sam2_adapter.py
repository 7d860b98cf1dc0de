"""Tripwires for agents/sam2_adapter.py, the one module that uses SAM 2's private parts.

A failure here means the installed sam2 is not the release the adapter mirrors: read the new release's
`SAM2VideoPredictor.init_state` and `SAM2ImagePredictor`, port the adapter, then change SAM2_VERSION.
"""

import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from agents import sam2_adapter
from agents.grounded_sam2 import SAM2_HUB
from agents.sam2_adapter import SAM2_VERSION, Sam2VersionError


def test_the_installed_sam2_is_the_release_the_adapter_mirrors():
    found = sam2_adapter.installed_version()
    assert found == SAM2_VERSION, (
        f"sam2 {found} is installed but agents/sam2_adapter.py was written against sam2 {SAM2_VERSION}: "
        "port the adapter (its docstring says how) before changing the pin"
    )


def test_the_private_names_the_adapter_touches_exist():
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    params = list(inspect.signature(SAM2VideoPredictor._get_image_feature).parameters)
    assert params == ["self", "inference_state", "frame_idx", "batch_size"]
    assert "_bb_feat_sizes" in inspect.getsource(SAM2ImagePredictor.__init__)
    assert "_bb_feat_sizes" in inspect.getsource(SAM2ImagePredictor.set_image)
    for repo in SAM2_HUB.values():
        assert sam2_adapter.checkpoint_filename(repo) == HF_MODEL_ID_TO_FILENAMES[repo][1]
        assert HF_MODEL_ID_TO_FILENAMES[repo][1].endswith(".pt")


@pytest.fixture(scope="module")
def predictor():
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    return build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=["++model.image_size=256"],
    ).eval()


def test_our_state_is_the_one_init_state_builds(predictor, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i:05d}.jpg")
    with torch.inference_mode():
        theirs = predictor.init_state(str(tmp_path))
        ours = sam2_adapter.init_state_from_frames(predictor, theirs["images"], 48, 64, offload=False)
    assert list(ours) == list(theirs)  # the same keys, in the same order
    for key, value in theirs.items():
        if key != "cached_features":
            assert type(ours[key]) is type(value) and (ours[key] is value or ours[key] == value), key
    ((frame, (image, features)),) = theirs["cached_features"].items()
    ((our_frame, (our_image, our_features)),) = ours["cached_features"].items()
    assert our_frame == frame == 0 and torch.equal(our_image, image)
    assert set(our_features) == set(features)
    for a, b in zip(our_features["backbone_fpn"], features["backbone_fpn"]):
        assert torch.allclose(a, b)


def test_the_image_predictor_gets_feature_sizes_for_the_image_size(predictor):
    assert sam2_adapter.image_predictor(predictor, 256)._bb_feat_sizes == [(64, 64), (32, 32), (16, 16)]


def test_another_sam2_release_is_refused_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(sam2_adapter, "installed_version", lambda: "1.2.0")
    sam2_adapter.require_version.cache_clear()
    try:
        with pytest.raises(Sam2VersionError, match=r"sam2 1\.2\.0 is installed.*sam2==1\.1\.0"):
            sam2_adapter.init_state_from_frames(None, torch.zeros(1, 3, 8, 8), 8, 8, offload=False)
        with pytest.raises(Sam2VersionError):
            sam2_adapter.image_predictor(None, 256)
    finally:
        monkeypatch.undo()
        sam2_adapter.require_version.cache_clear()
    sam2_adapter.require_version()  # the real one passes again
