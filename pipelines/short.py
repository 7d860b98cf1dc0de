"""Short descriptions (VideoRefer-700K 'short'): the subject's mask, and the source caption as the answer.

caption (if missing) -> analyze (subject) -> segment (subject only) -> single-frame samples
"""

from engine.runtime.pipeline import Pipeline
from pipelines.stages import AnalyzeStage, CaptionStage, SegmentStage, ShortSamples


def build_pipeline() -> Pipeline:
    return Pipeline(
        name="short",
        description="subject mask + the raw caption",
        stages=[
            CaptionStage(),
            AnalyzeStage(),
            SegmentStage(subject_only=True),
            ShortSamples(),
        ],
    )
