"""Question-answer pairs about objects the Reviewer kept (basic, reasoning, future prediction).

The detailed pipeline's stages up to refine, then QA per object and about two objects together.
"""

from engine.runtime import Pipeline
from pipelines.stages import (AnalyzeStage, AnnotateStage, CaptionStage, QAStage, RefineStage, ReviewStage,
                              SegmentStage)


def build_pipeline() -> Pipeline:
    return Pipeline(
        name="qa",
        description="QA pairs about kept objects, single- and multi-object",
        stages=[
            CaptionStage(),
            AnalyzeStage(),
            SegmentStage(),
            AnnotateStage(),
            ReviewStage(),
            RefineStage(),
            QAStage(),
        ],
    )
