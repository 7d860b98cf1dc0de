"""Question-answer pairs (basic, reasoning, future prediction), from two sources:

- videos of the source: objects the Reviewer kept, after the detailed pipeline's stages up to refine;
- an annotated dataset (engine/sources/datasets): its objects, masks and referring expressions stand in for the
  Analyzer, Segmentor and Reviewer, as the paper did; the Annotator describes each object on the masked frames
  with the expressions as context, and the Refiner merges that into the description QA is written from.
"""

from engine.runtime.pipeline import Pipeline
from pipelines.stages import (
    AnalyzeStage,
    AnnotateStage,
    CaptionStage,
    DatasetObjectsStage,
    DatasetQAStage,
    GateStage,
    QAStage,
    RefineStage,
    ReviewStage,
    SegmentStage,
    is_dataset_video,
    is_plain_video,
)


def build_pipeline() -> list[Pipeline]:
    return [
        Pipeline(
            name="qa",
            description="QA pairs about kept objects, single- and multi-object",
            accepts=is_plain_video,
            stages=[
                CaptionStage(),
                AnalyzeStage(),
                SegmentStage(),
                GateStage(),
                AnnotateStage(),
                ReviewStage(),
                RefineStage(),
                QAStage(),
            ],
        ),
        *build_dataset_pipeline(),
    ]


def build_dataset_pipeline() -> list[Pipeline]:
    """As the paper (3.1.2): the dataset's objects and masks; the Annotator on the masked frames with the referring
    expressions as context; the Refiner merges its two descriptions; QA from that description."""
    return [
        Pipeline(
            name="qa_dataset",
            description="QA pairs about an annotated dataset's objects (MeViS, Ref-YouTube-VOS, A2D-Sentences, "
            "Ref-DAVIS17)",
            accepts=is_dataset_video,
            stages=[
                DatasetObjectsStage(),
                GateStage(dataset=True),
                AnnotateStage(masked=True, context_kind="short"),
                RefineStage(),
                DatasetQAStage(),
            ],
        ),
    ]
