"""Detailed descriptions: all five agents.

caption (if missing) -> analyze -> segment (all nouns, one request per video) -> annotate (dynamic
and static) -> review (keep or discard) -> refine (one detailed description) -> samples
"""

from engine.runtime.pipeline import Pipeline
from pipelines.stages import (
    AnalyzeStage,
    AnnotateStage,
    CaptionStage,
    DetailedSamples,
    GateStage,
    RefineStage,
    ReviewStage,
    SegmentStage,
    is_plain_video,
)


def build_pipeline() -> Pipeline:
    return Pipeline(
        name="detailed",
        accepts=is_plain_video,  # a dataset's videos go to its own pipeline (qa), never this one
        description="reviewed detailed descriptions of every grounded object",
        stages=[
            CaptionStage(),
            AnalyzeStage(),
            SegmentStage(),
            GateStage(),
            AnnotateStage(),
            ReviewStage(),
            RefineStage(),
            DetailedSamples(),
        ],
    )
