"""Short descriptions (VideoRefer-700K 'short'): the subject's mask, and the source caption as the answer.

caption (if missing) -> analyze (subject) -> segment (subject only) -> single-frame samples
"""

from engine.runtime.pipeline import Pipeline
from pipelines.stages import AnalyzeStage, CaptionStage, GateStage, SegmentStage, ShortSamples, is_plain_video


def build_pipeline() -> Pipeline:
    return Pipeline(
        name="short",
        accepts=is_plain_video,  # a dataset's videos go to its own pipeline (qa), never this one
        description="subject mask + the raw caption",
        stages=[
            CaptionStage(),
            AnalyzeStage(),
            SegmentStage(subject_only=True),
            GateStage(),
            ShortSamples(),
        ],
    )
