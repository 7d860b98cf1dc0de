"""Question-answer pairs (basic, reasoning, future prediction), from two sources:

- videos of the source: objects the Reviewer kept, after the detailed pipeline's stages up to refine;
- an annotated dataset in the MeViS / Ref-YouTube-VOS layout: its objects, masks and referring
  expressions stand in for the Analyzer, Segmentor, Annotator and Reviewer, as the paper did.
"""

from engine.runtime.pipeline import Pipeline
from pipelines.stages import (AnalyzeStage, AnnotateStage, CaptionStage, DatasetObjectsStage, DatasetQAStage,
                              QAStage, RefineStage, ReviewStage, SegmentStage, is_dataset_video)


def build_pipeline() -> list[Pipeline]:
    return [
        Pipeline(
            name="qa",
            description="QA pairs about kept objects, single- and multi-object",
            accepts=lambda video: not is_dataset_video(video),
            stages=[
                CaptionStage(),
                AnalyzeStage(),
                SegmentStage(),
                AnnotateStage(),
                ReviewStage(),
                RefineStage(),
                QAStage(),
            ],
        ),
        Pipeline(
            name="qa_dataset",
            description="QA pairs from a dataset's objects, masks and referring expressions",
            accepts=is_dataset_video,
            stages=[
                DatasetObjectsStage(),
                DatasetQAStage(),
            ],
        ),
    ]
