"""One validated configuration: a TOML file, overridden by ENGINE_* variables, overridden by CLI flags.

Precedence (last wins): built-in defaults < config file < environment < command-line flags.
Environment variables use the prefix ``ENGINE_`` and ``__`` between nesting levels, e.g.
``ENGINE_SAMPLING__MASK_FRAMES=16`` or ``ENGINE_AGENTS__ANNOTATOR__MODEL=gpt-4o``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from engine.media.clips import ClipRules

ENV_PREFIX = "ENGINE_"
DEFAULT_CONFIG_NAME = "engine.toml"
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai package's, where nothing else names one
AGENT_NAMES = ("captioner", "analyzer", "annotator", "reviewer", "refiner")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key, the value and where it came from."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingConfig(_Strict):
    mask_frames: int = Field(32, ge=1, le=4096, description="frames per masklet (uniform segment midpoints)")
    annotator_frames: int = Field(16, ge=1, le=256, description="frames shown to the Annotator")
    frame_folder_fps: float = Field(30.0, gt=0, description="fps assumed for folders of JPEG/PNG frames")


class EndpointConfig(_Strict):
    """An OpenAI-compatible chat endpoint for one agent. Empty base_url: the openai package's env vars apply."""

    base_url: str = ""
    model: str = "gpt-4o-mini"
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env var holding the key, never the key")
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(1024, ge=1)
    price_in_per_mtok: float = Field(0.15, ge=0, description="USD per million input tokens")
    price_out_per_mtok: float = Field(0.60, ge=0, description="USD per million output tokens")
    structured_output: Literal["auto", "json_schema", "json_object", "text"] = Field(
        "auto", description="auto: json_schema, degrading to JSON mode, then text, if the server rejects it"
    )
    timeout_s: float = Field(120.0, gt=0, description="per request")
    max_attempts: int = Field(6, ge=1, description="tries per request on 429/5xx/timeouts/connection errors")
    backoff_max_s: float = Field(60.0, gt=0, description="longest wait between tries")
    breaker_failures: int = Field(
        20,
        ge=1,
        description="consecutive connection errors or 5xx that stop all sending to this endpoint while it is probed",
    )
    breaker_down_s: float = Field(60.0, gt=0, description="an endpoint down this long aborts the run")
    max_concurrent: int = Field(16, ge=1, description="requests in flight to this endpoint")
    rpm: int = Field(0, ge=0, description="requests per minute; 0 = unlimited")
    tpm: int = Field(0, ge=0, description="tokens per minute; 0 = unlimited")
    image_max_side: int = Field(768, ge=16, description="frames are scaled so their longest side is at most this")
    image_quality: int = Field(85, ge=10, le=100, description="JPEG quality of frames sent to the model")

    def url(self, environ: Mapping[str, str]) -> str:
        """Where its requests go: base_url, else $OPENAI_BASE_URL, else OpenAI's (as the openai package does)."""
        return (self.base_url or environ.get("OPENAI_BASE_URL", "") or DEFAULT_BASE_URL).rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, v: str) -> str:
        # Catches the common mistake of pasting the key itself here (it would then be logged and stored).
        if v and not v.replace("_", "").isalnum():
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not a key")
        return v


class AgentsConfig(_Strict):
    captioner: EndpointConfig = EndpointConfig()
    analyzer: EndpointConfig = EndpointConfig()
    annotator: EndpointConfig = EndpointConfig()
    reviewer: EndpointConfig = EndpointConfig()
    refiner: EndpointConfig = EndpointConfig()


JUDGE_PREFIX = "judge."  # a cascade judge's endpoint key: "judge.<name>" ([[review.cascade]])


class JudgeConfig(EndpointConfig):
    """One judge of the Reviewer's cascade ([[review.cascade]]): an endpoint like an agent's, a name, and its band."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,32}$", description="names the judge in reviews and reports")
    band: tuple[float, float] | None = Field(
        None,
        description="[lo, hi]: P(same object) >= hi keeps, < lo discards, between goes to the next judge (the last "
        "judge keeps at >= hi and discards the rest); none: review.default_band, not calibrated",
    )

    @field_validator("band")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 <= v[0] <= v[1] <= 1:
            raise ValueError(f"a band is [lo, hi] with 0 <= lo <= hi <= 1, not {list(v)}")
        return v


class ReviewConfig(_Strict):
    """How the Reviewer's judging step scores and decides (agents/reviewer.py, pipelines/stages.py ReviewStage)."""

    logprobs: Literal["auto", "off"] = Field(
        "auto",
        description="auto: ask for token log-probabilities; where the server returns them a judge's score is "
        "P(same object) of its answer token, else its verbalised confidence. off: the verbalised confidence",
    )
    cascade: list[JudgeConfig] = Field(
        default_factory=list,
        description="judges from cheap to strong; empty: agents.reviewer judges alone and its verdict decides",
    )
    default_band: tuple[float, float] = Field(
        (0.02, 0.98),
        description="the band of a judge without one, before `engine audit calibrate --cascade` (wide: calibration "
        "can only narrow the bands the reviews were made with)",
    )
    last_keep_at: float = Field(0.5, ge=0, le=1, description="the last judge's threshold when it has no band")

    @field_validator("default_band")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1] <= 1:
            raise ValueError(f"a band is [lo, hi] with 0 <= lo <= hi <= 1, not {list(v)}")
        return v

    @field_validator("cascade")
    @classmethod
    def _unique(cls, v: list[JudgeConfig]) -> list[JudgeConfig]:
        names = [j.name for j in v]
        if len(set(names)) != len(names):
            raise ValueError(f"judge names must differ: {names}")
        return v

    def bands(self) -> list[tuple[float, float]]:
        """Each judge's band in force, the last one's as (t, t)."""
        out = [j.band or self.default_band for j in self.cascade]
        if self.cascade:
            last = self.cascade[-1].band
            t = last[1] if last else self.last_keep_at
            out[-1] = (t, t)
        return out

    @property
    def calibrated(self) -> bool:
        """Every band set (by `engine audit calibrate --cascade --apply`, or by hand), none from the default."""
        return all(j.band is not None for j in self.cascade)


class SegmentorConfig(_Strict):
    backend: str = Field("grounded_sam2", description="a registered name or an import path 'package.module:Class'")
    sam2_model: Literal[
        "sam2_hiera_t",
        "sam2_hiera_s",
        "sam2_hiera_b+",
        "sam2_hiera_l",
        "sam2.1_hiera_t",
        "sam2.1_hiera_s",
        "sam2.1_hiera_b+",
        "sam2.1_hiera_l",
    ] = "sam2.1_hiera_b+"
    sam2_checkpoint: str = Field(
        "",
        description="local path; empty = download from the hub into cache_dir; "
        "'random' = random weights (tests and speed benchmarks)",
    )
    gdino_model: Literal["swint_ogc", "swinb_cogcoor"] = "swint_ogc"
    gdino_checkpoint: str = ""
    text_encoder: str = Field("bert-base-uncased", description="hub name or local folder of GroundingDINO's BERT")
    cache_dir: str = Field("", description="checkpoint cache; empty = ~/.cache/videorefer-engine")
    device: Literal["auto", "cuda", "cpu"] = "auto"
    image_size: int = Field(1024, ge=64, le=4096)
    box_threshold: float = Field(0.35, ge=0, le=1)
    text_threshold: float = Field(0.25, ge=0, le=1)
    anchor_candidates: int = Field(4, ge=1, le=64)
    gdino_image_size: int = Field(800, ge=64, le=1333, description="GroundingDINO input, shorter side")
    max_instances: int = Field(3, ge=1, le=32, description="instances kept per noun on its anchor frame")
    instance_iou: float = Field(0.5, ge=0, le=1, description="boxes overlapping more are one instance (NMS)")
    offload_frames_over: int = Field(256, ge=1, description="longer videos keep their frames in CPU memory")
    compile: bool = Field(False, description="torch.compile SAM 2's image encoder (slow start, faster frames)")


class ActorResources(_Strict):
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    replicas: int = Field(1, ge=1)
    max_concurrency: int = Field(16, ge=1, description="calls in flight per actor")


def _default_resources() -> dict[str, ActorResources]:
    # Roles: media (decode, sample, draw, encode: CPU) and segmentor (GPU when there is one). "model" starts no
    # actor: model calls run in the driver's event loop (engine/runtime/services.py); older configurations name it.
    return {
        "media": ActorResources(num_cpus=1.0, replicas=1, max_concurrency=1),
        "segmentor": ActorResources(num_cpus=1.0, num_gpus=1.0, max_concurrency=2),  # one runs, one is staged
        "model": ActorResources(num_cpus=0.0, replicas=1, max_concurrency=64),
        # the shot detector: a phase before the pipelines, its actors gone before theirs start
        "split": ActorResources(num_cpus=1.0, replicas=1, max_concurrency=1),
    }


class RayConfig(_Strict):
    address: str = Field("", description="empty = start a local Ray instance; 'auto' or ray://host:port joins one")
    resources: dict[str, ActorResources] = Field(default_factory=_default_resources)

    @field_validator("resources", mode="before")
    @classmethod
    def _merge_with_role_defaults(cls, v: Any) -> Any:
        """A role given in part keeps its own defaults for the rest (a segmentor stays at one call at a time)."""
        if not isinstance(v, Mapping):
            return v
        defaults = _default_resources()
        unknown = sorted(set(v) - set(defaults))
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; known: {sorted(defaults)}")
        merged = {role: res.model_dump() for role, res in defaults.items()}
        for role, given in v.items():
            merged[role] = {**merged[role], **dict(given)} if isinstance(given, Mapping) else given
        return merged


class RuntimeConfig(_Strict):
    videos_in_flight: int = Field(8, ge=1, description="videos being worked on at once (bounds memory)")
    max_unit_attempts: int = Field(3, ge=1, description="tries of a failing unit in one run before quarantine")
    multi_frame_ratio: float = Field(0.5, ge=0, le=1, description="share of detailed/QA samples that are multi-frame")
    reviewer_mode: Literal["paper", "direct"] = "paper"
    min_free_gb: float = Field(1.0, ge=0, description="preflight warns when the store's disk has less free space")


QAType = Literal["basic", "reasoning", "future"]
_PAPER_QA_MIX: dict[QAType, float] = {"basic": 40.0, "reasoning": 21.0, "future": 14.0}


class GatesConfig(_Strict):
    """Masklet quality gates, right after segmentation (engine/media/gates.py): an object whose masklet fails one
    costs no further call and makes no sample. Defaults chosen on the test segmentors' labelled masklets
    (tests/support/fake_segmentor.py LabelledSegmentor); `engine audit gates` suggests thresholds from audits."""

    enabled: bool = Field(True, description="false: no gate; every grounded object goes on")
    dataset_masks: bool = Field(False, description="gate a dataset's own masks too (people drew them)")
    max_empty_share: float = Field(0.5, ge=0, le=1, description="share of sampled frames with an empty mask")
    min_mean_iou: float = Field(0.1, ge=0, le=1, description="mean IoU of consecutive masks (flicker: near 0)")
    min_area_share: float = Field(0.0, ge=0, le=1, description="mean share of the frame the mask covers")
    max_area_share: float = Field(0.6, ge=0, le=1, description="above it the mask has drifted onto the background")
    max_border_contact: float = Field(
        1.0, ge=0, le=1, description="share of masks touching the frame's edge (1: off; objects leave the frame)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> GatesConfig:
        if self.min_area_share > self.max_area_share:
            raise ValueError(f"min_area_share {self.min_area_share} is above max_area_share {self.max_area_share}")
        return self

    def thresholds(self) -> dict[str, float]:
        """The gates' thresholds by key (engine/media/gates.py GATES names the same keys)."""
        return {k: v for k, v in self.model_dump().items() if k.startswith(("min_", "max_"))}


class ShortConfig(_Strict):
    """Which grounded instance of a clip's subject a short record describes: the caption speaks of one object."""

    subject_rule: Literal["unique", "top_score"] = Field(
        "unique",
        description="unique: only a subject grounded exactly once; top_score: also the instance whose grounding "
        "score beats every other's by score_margin",
    )
    score_margin: float = Field(0.2, ge=0, le=1, description="top_score: the least lead over the second instance")


class QAConfig(_Strict):
    """What QA is written about, and how much of each kind (the paper's released mix: ~40K basic, 21K reasoning,
    14K future prediction)."""

    pairs_per_set: int = Field(3, ge=1, le=10, description="QA pairs asked for per object (or pair of objects)")
    type_mix: dict[QAType, float] = Field(
        default_factory=_PAPER_QA_MIX.copy,
        description="relative share of each QA type; each pair's type is drawn from it, deterministically",
    )
    pairs_per_video: int = Field(
        6,
        ge=0,
        description="two-object QA sets per video at most: the pairs of kept "
        "objects seen together on the most frames first",
    )
    frames: bool = Field(
        False,
        description="the QA writer also sees frames with the objects marked (needs a "
        "vision-language model on the refiner endpoint)",
    )

    @model_validator(mode="after")
    def _some_type(self) -> QAConfig:
        if not any(v > 0 for v in self.type_mix.values()) or any(v < 0 for v in self.type_mix.values()):
            raise ValueError("qa.type_mix needs non-negative shares, at least one above 0")
        return self


class SplitConfig(_Strict):
    """Raw videos are cut into clips at shot boundaries before any agent sees them (engine/media/shots.py, clips.py).
    transnetv2 is the default: of the three it alone sees dissolves and fades, whose frames belong to no clip;
    content (PySceneDetect) is 14x faster but sees hard cuts only; none keeps every video whole (no clip rules)."""

    detector: Literal["transnetv2", "content", "none"] = "transnetv2"
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto: the GPU when the Ray cluster has one")
    min_seconds: float = Field(ClipRules.min_seconds, ge=0, description="shorter clips are dropped (too_short)")
    max_seconds: float = Field(ClipRules.max_seconds, gt=0, description="longer shots are cut into windows")
    min_motion: float = Field(ClipRules.min_motion, ge=0, description="mean frame difference (0..255) below: static")
    min_brightness: float = Field(ClipRules.min_brightness, ge=0, description="mean (0..255) below: black")
    min_contrast: float = Field(ClipRules.min_contrast, ge=0, description="mean in-frame std below: uniform")
    min_side: int = Field(ClipRules.min_side, ge=0, description="shorter side in pixels below: low_resolution")
    duplicate_distance: float = Field(
        ClipRules.duplicate_distance, ge=0, le=64, description="mean pHash distance at or below: near_duplicate"
    )

    @model_validator(mode="after")
    def _lengths(self) -> SplitConfig:
        if self.max_seconds < self.min_seconds:
            raise ValueError("split.max_seconds must be at least split.min_seconds")
        return self

    def rules(self) -> ClipRules:
        return ClipRules(**self.model_dump(exclude={"detector", "device"}))


class PlanConfig(_Strict):
    """Assumptions behind the dry-run estimate; measured values replace them once runs exist."""

    objects_per_video: float = Field(3.0, ge=0)
    tokens_per_image: int = Field(258, ge=0, description="input tokens one image costs at the encoded size")
    keep_rate: float = Field(0.4, ge=0, le=1, description="share of objects the Reviewer keeps (paper: about 40%)")
    cascade_deferred: float = Field(
        0.5, ge=0, le=1, description="share of objects a cascade judge hands to the next (review.cascade)"
    )


class MetricsConfig(_Strict):
    """Prometheus metrics of a run in flight (engine/runtime/metrics.py); off unless a port is given."""

    port: int | None = Field(
        None, ge=0, le=65535, description="serve /metrics on 127.0.0.1:port during a run (0: any)"
    )
    linger_s: float = Field(15.0, ge=0, description="after the run, the final values stay up this long for a scrape")


class Config(_Strict):
    data_dir: str = Field("engine-data", description="where the store, caches and exports live")
    database_url: str = Field("", description="any SQLAlchemy URL; empty = SQLite file in data_dir (WAL mode)")
    sampling: SamplingConfig = SamplingConfig()
    qa: QAConfig = QAConfig()
    short: ShortConfig = ShortConfig()
    gates: GatesConfig = GatesConfig()
    split: SplitConfig = SplitConfig()
    agents: AgentsConfig = AgentsConfig()
    segmentor: SegmentorConfig = SegmentorConfig()
    ray: RayConfig = RayConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    plan: PlanConfig = PlanConfig()
    metrics: MetricsConfig = MetricsConfig()
    review: ReviewConfig = ReviewConfig()
    # what load_config read besides the values: the file, the overrides, the ENGINE_ variables (see `origin`)
    _origin: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        """Equal settings are equal configurations, wherever they came from (`origin` is not a setting)."""
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    @property
    def origin(self) -> dict[str, Any]:
        """Where these settings came from, which the resolved values cannot say: {"config_file": path or None,
        "overrides": {dotted key: value}, "environment": {ENGINE_ variable: value}}, database passwords hidden.
        A run records it, so its results can be found again without its flags (engine/store/views.py)."""
        return dict(self._origin)

    def endpoint_keys(self) -> tuple[str, ...]:
        """Every endpoint key: the agents', then the cascade's judges' ("judge.<name>")."""
        return AGENT_NAMES + tuple(JUDGE_PREFIX + j.name for j in self.review.cascade)

    def endpoint(self, key: str) -> EndpointConfig:
        """An endpoint's settings by key; KeyError for one that is not configured."""
        if key in AGENT_NAMES:
            return getattr(self.agents, key)
        for j in self.review.cascade:
            if key == JUDGE_PREFIX + j.name:
                return j
        raise KeyError(key)

    @staticmethod
    def endpoint_table(key: str) -> str:
        """Where an endpoint's settings are written, for messages: agents.<key>, or review.cascade.<judge name>."""
        if key.startswith(JUDGE_PREFIX):
            return f"review.cascade.{key[len(JUDGE_PREFIX) :]}"
        return f"agents.{key}"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'engine.sqlite'}"


def default_config_text() -> str:
    """The commented default config that `engine init` writes."""
    return resources.files("engine").joinpath("default_config.toml").read_text()


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """ENGINE_A__B=value -> {"a": {"b": value}}; also returns which variable set each key."""
    tree: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "ENGINE_CONFIG":
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another ENGINE_ variable")
        # JSON lets lists/tables come through env (ENGINE_RAY__RESOURCES='{"segmentor": {...}}').
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        node[path[-1]] = value
        origin[path] = f"environment variable {name}"
    return tree, origin


def _format_errors(err: ValidationError, origins: dict[tuple[str, ...], str], file_label: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        key = ".".join(loc) or "(root)"
        where = next((origins[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origins), file_label)
        value = e.get("input")
        shown = "" if e["type"] == "missing" else f" = {value!r}"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'{shown} (from {where})")
        else:
            lines.append(f"config key '{key}'{shown}: {e['msg']} (from {where})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate the configuration.

    Args:
        path: a TOML file. None: $ENGINE_CONFIG, else ./engine.toml if it exists, else built-in defaults.
        overrides: values from CLI flags, dotted keys allowed ({"sampling.mask_frames": 8}).
        environ: the environment to read ENGINE_* variables from (default os.environ).
    """
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get("ENGINE_CONFIG") or (DEFAULT_CONFIG_NAME if Path(DEFAULT_CONFIG_NAME).exists() else None)
    data: dict[str, Any] = {}
    file_label = "built-in defaults"
    if path is not None:
        p = Path(path)
        file_label = f"config file {p}"
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (create one with `engine init {p}`)")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    env_tree, origins = _env_overrides(environ)
    data = _deep_merge(data, env_tree)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        keys = tuple(dotted.split("."))
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        origins[keys] = f"command-line option for '{dotted}'"
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origins, file_label)) from None
    cfg._origin = {
        "config_file": str(Path(path).resolve()) if path is not None else None,
        "overrides": {k: _hide_password(k, v) for k, v in (overrides or {}).items() if v is not None},
        "environment": {
            n: _hide_password(n, v) for n, v in environ.items() if n.startswith(ENV_PREFIX) and n != "ENGINE_CONFIG"
        },
    }
    return cfg


def _hide_password(key: str, value: Any) -> Any:
    """A database URL's password, hidden: the origin is stored in the runs table and shown."""
    if "database_url" in key.lower() and isinstance(value, str):
        return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", value)
    return value
