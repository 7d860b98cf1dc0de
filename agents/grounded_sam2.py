"""The GroundingDINO + SAM 2 segmentor backend.

For one video and its nouns:
1. anchor frames: GroundingDINO scores `anchor_candidates` frames (spread uniformly over the mask
   frames, one batch, all nouns in one text prompt); per noun the frame with the best box wins
   (the paper took one random frame). Boxes of that noun on that frame, after NMS, are its
   instances: distinct objects, never merged. A noun with no box above the threshold is not grounded.
2. box -> mask on the anchor frame with SAM 2's image predictor (shares the video model's weights).
3. SAM 2 video propagation, all objects of the video in one inference state, forward and backward
   from the anchors over the sampled mask frames. Frames come from our decoder as an array: no
   re-decoding and no JPEG round trip through disk (agents/sam2_adapter.py, where every use of SAM 2's
   private parts lives).

Checkpoints come from local paths, or are downloaded from the Hugging Face hub into a cache on first
use; "random" builds random weights (tests and speed benchmarks only).
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents import sam2_adapter
from agents.segmentor import SegmentRequest, Track
from engine.media import masks
from engine.media.video import uniform_indices
from engine.store.ids import stable_id

log = logging.getLogger(__name__)


class _OnFirstUse:
    """A module imported when first touched: the driver loads this class only to read its version (no torch)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
else:
    torch = _OnFirstUse("torch")
    F = _OnFirstUse("torch.nn.functional")
os.environ.setdefault("TQDM_DISABLE", "1")  # SAM 2's propagation draws a progress bar per call

RANDOM = "random"
SAM2_HUB = {  # config name -> hub repository (file names come from sam2's own table)
    "sam2_hiera_t": "facebook/sam2-hiera-tiny",
    "sam2_hiera_s": "facebook/sam2-hiera-small",
    "sam2_hiera_b+": "facebook/sam2-hiera-base-plus",
    "sam2_hiera_l": "facebook/sam2-hiera-large",
    "sam2.1_hiera_t": "facebook/sam2.1-hiera-tiny",
    "sam2.1_hiera_s": "facebook/sam2.1-hiera-small",
    "sam2.1_hiera_b+": "facebook/sam2.1-hiera-base-plus",
    "sam2.1_hiera_l": "facebook/sam2.1-hiera-large",
}
GDINO = {  # name -> (config file in the groundingdino package, hub file)
    "swint_ogc": ("GroundingDINO_SwinT_OGC.py", "groundingdino_swint_ogc.pth"),
    "swinb_cogcoor": ("GroundingDINO_SwinB_cfg.py", "groundingdino_swinb_cogcoor.pth"),
}
GDINO_REPO = "ShilongLiu/GroundingDINO"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, cannot be downloaded, or does not fit the model."""


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _hub_file(repo: str, filename: str, cache_dir: str, setting: str) -> str:
    from huggingface_hub import hf_hub_download

    cache = cache_dir or os.path.join(Path.home(), ".cache", "videorefer-engine")
    try:
        return hf_hub_download(repo_id=repo, filename=filename, cache_dir=cache)
    except Exception as e:  # offline, unknown file, no permission: all mean the same to the user
        raise CheckpointError(
            f"{filename} is not cached in {cache} and could not be downloaded from the Hugging Face hub "
            f"({repo}): {type(e).__name__}. Download it elsewhere and set segmentor.{setting} to its path."
        ) from None


def _load_state(model: torch.nn.Module, path: str, what: str, strict: bool = True) -> None:
    if not Path(path).is_file():
        raise CheckpointError(f"{what} checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{what} checkpoint {path} cannot be read: {e}") from None
    state = state.get("model", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or (strict and unexpected):
        raise CheckpointError(
            f"{what} checkpoint {path} does not fit the model: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
        )


def build_sam2(cfg: Any, device: torch.device) -> tuple[Any, Any]:
    """SAM 2's video predictor and an image predictor that shares its weights."""
    sam2_adapter.require_version()  # before anything is built
    from sam2.build_sam import build_sam2_video_predictor

    family = cfg.sam2_model.split("_")[0]  # sam2 | sam2.1
    config_name = f"configs/{family}/{cfg.sam2_model}.yaml"
    predictor = build_sam2_video_predictor(
        config_name,
        ckpt_path=None,
        device="cpu",
        vos_optimized=cfg.compile,
        hydra_overrides_extra=[f"++model.image_size={cfg.image_size}"],
    )
    if cfg.sam2_checkpoint != RANDOM:
        path = cfg.sam2_checkpoint or _hub_file(
            SAM2_HUB[cfg.sam2_model],
            sam2_adapter.checkpoint_filename(SAM2_HUB[cfg.sam2_model]),
            cfg.cache_dir,
            "sam2_checkpoint",
        )
        _load_state(predictor, path, "SAM 2")
    predictor = predictor.to(device).eval()
    return predictor, sam2_adapter.image_predictor(predictor, cfg.image_size)


def build_grounding_dino(cfg: Any, device: torch.device):
    import groundingdino
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    config_file, hub_file = GDINO[cfg.gdino_model]
    args = SLConfig.fromfile(str(Path(groundingdino.__file__).parent / "config" / config_file))
    args.device = str(device)
    args.text_encoder_type = cfg.text_encoder
    try:
        model = build_model(args)
    except (OSError, ValueError) as e:  # the BERT text encoder could not be found, fetched or named
        raise CheckpointError(
            f"GroundingDINO's text encoder {cfg.text_encoder!r} cannot be loaded ({e}); set "
            "segmentor.text_encoder to a local BERT folder on offline machines"
        ) from None
    if cfg.gdino_checkpoint != RANDOM:
        path = cfg.gdino_checkpoint or _hub_file(GDINO_REPO, hub_file, cfg.cache_dir, "gdino_checkpoint")
        _load_state(model, path, "GroundingDINO", strict=False)  # the release carries unused heads
    return model.to(device).eval()


class GroundedSam2Segmentor:
    """segmentor.backend = "grounded_sam2". Built once per actor; see the module docstring."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.device = _device(cfg.device)
        self.sam2, self.image_predictor = build_sam2(cfg, self.device)
        self.gdino = build_grounding_dino(cfg, self.device)
        self.version = self.version_for(cfg)
        self.seconds = {"ground": 0.0, "track": 0.0}  # cumulative, for benchmarks and logs

    @classmethod
    def version_for(cls, cfg: Any) -> str:
        """Models and size, readable, then a digest of every other setting that changes the masks: changing
        a threshold or a checkpoint gives a new version, so the next run re-segments (and reruns what follows)."""
        settings = [
            getattr(cfg, k)
            for k in (
                "sam2_checkpoint",
                "gdino_checkpoint",
                "text_encoder",
                "box_threshold",
                "text_threshold",
                "anchor_candidates",
                "gdino_image_size",
                "max_instances",
                "instance_iou",
            )
        ]
        digest = stable_id("settings", *settings)[:8]
        return f"grounded_sam2@1|{cfg.sam2_model}|{cfg.gdino_model}|{cfg.image_size}|{digest}"

    def _autocast(self):
        # bf16 on CUDA for speed; on the CPU too, because SAM 2 keeps its memory features in bf16 and
        # its attention fails on mixed dtypes without autocast
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]:
        if not request.nouns or len(frames) == 0:
            return []
        with torch.inference_mode(), self._autocast():
            t0 = time.perf_counter()
            detections = self.ground(request.nouns, frames)
            t1 = time.perf_counter()
            tracks = self._track(request, frames, detections) if detections else []
            self.seconds["ground"] += t1 - t0
            self.seconds["track"] += time.perf_counter() - t1
            return tracks

    # --- 1. grounding ------------------------------------------------------------------------------
    def ground(self, nouns: tuple[str, ...], frames: np.ndarray) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
        """{noun: (frame position, boxes xyxy pixels (N, 4), scores (N,))} for the grounded nouns."""
        from torchvision.ops import box_convert, nms

        positions = [int(p) for p in uniform_indices(len(frames), self.cfg.anchor_candidates)]
        h, w = frames.shape[1:3]
        batch = self._gdino_input(frames[positions])
        caption, spans = _caption(nouns)
        outputs = self.gdino(batch, captions=[caption] * len(positions))
        logits = outputs["pred_logits"].float().sigmoid()  # (B, queries, 256 text positions)
        boxes = outputs["pred_boxes"].float()  # (B, queries, 4) normalized cx, cy, w, h
        tokens = self.gdino.tokenizer(caption)
        found = {}
        for noun, (start, end) in zip(nouns, spans):
            cols = sorted({t for c in range(start, end) if (t := tokens.char_to_token(c)) is not None})
            score = logits[:, :, cols].max(dim=2).values  # (B, queries): the noun's best token
            best = int(score.max(dim=1).values.argmax())
            keep = score[best] > self.cfg.box_threshold
            if not keep.any():
                continue
            xyxy = box_convert(boxes[best][keep], "cxcywh", "xyxy") * torch.tensor([w, h, w, h], device=boxes.device)
            xyxy = xyxy.clamp(min=0).minimum(torch.tensor([w, h, w, h], device=boxes.device))
            s = score[best][keep]
            order = nms(xyxy, s, self.cfg.instance_iou)[: self.cfg.max_instances]
            found[noun] = (positions[best], xyxy[order].cpu().numpy(), s[order].cpu().numpy())
        return found

    def _gdino_input(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 255
        h, w = x.shape[2:]
        scale = min(self.cfg.gdino_image_size / min(h, w), 1333 / max(h, w))
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    # --- 2 and 3. masks and propagation ------------------------------------------------------------
    def _track(self, request: SegmentRequest, frames: np.ndarray, detections: dict) -> list[Track]:
        h, w = frames.shape[1:3]
        objects = []  # (noun, instance, position, box, grounding score, mask, mask score)
        for pos in sorted({d[0] for d in detections.values()}):
            self.image_predictor.set_image(frames[pos])
            for noun, (p, boxes, scores) in detections.items():
                if p != pos:
                    continue
                m, iou, _ = self.image_predictor.predict(box=boxes, multimask_output=False)
                m = m.reshape(len(boxes), h, w) > 0
                for i in range(len(boxes)):
                    objects.append((noun, i, pos, boxes[i], float(scores[i]), m[i], float(np.ravel(iou)[i])))
        offload = len(frames) > self.cfg.offload_frames_over
        state = sam2_adapter.init_state_from_frames(self.sam2, self._sam2_input(frames, offload), h, w, offload)
        for k, (_, _, pos, _, _, mask, _) in enumerate(objects):
            self.sam2.add_new_mask(state, frame_idx=pos, obj_id=k, mask=torch.from_numpy(mask))
        anchors = [o[2] for o in objects]
        result: dict[int, dict[int, Any]] = {k: {} for k in range(len(objects))}
        for reverse in (False, True):
            for pos, obj_ids, logits in self.sam2.propagate_in_video(state, reverse=reverse):
                binary = (logits[:, 0] > 0).cpu().numpy()
                for j, k in enumerate(obj_ids):
                    # each direction is valid from the object's own anchor onwards (or backwards)
                    if (pos >= anchors[k]) if not reverse else (pos <= anchors[k]):
                        result[k][pos] = masks.encode(binary[j]) if binary[j].any() else None
        self.sam2.reset_state(state)
        tracks = []
        for k, (noun, instance, pos, box, g_score, _, m_score) in enumerate(objects):
            frame_masks = {request.frame_indices[p]: result[k].get(p) for p in range(len(frames))}
            tracks.append(
                Track(
                    noun,
                    instance,
                    request.frame_indices[pos],
                    (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                    g_score,
                    m_score,
                    frame_masks,
                )
            )
        return tracks

    def _sam2_input(self, frames: np.ndarray, offload: bool) -> torch.Tensor:
        s = self.cfg.image_size
        out = []
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        for chunk in np.array_split(frames, max(1, len(frames) // 16)):  # bounded peak memory while resizing
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device).permute(0, 3, 1, 2).float() / 255
            x = (F.interpolate(x, size=(s, s), mode="bilinear", antialias=True) - mean) / std
            out.append(x.cpu() if offload else x)
        return torch.cat(out)


def _caption(nouns: tuple[str, ...]) -> tuple[str, list[tuple[int, int]]]:
    """'red car . dog .' and each noun's character span, GroundingDINO's prompt convention."""
    caption, spans = "", []
    for noun in nouns:
        text = noun.lower().strip()
        spans.append((len(caption), len(caption) + len(text)))
        caption += text + " . "
    return caption.strip(), spans
