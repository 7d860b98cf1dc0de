"""QA from an annotated dataset: its objects, masks and expressions replace the first four agents."""

import numpy as np
import pytest

from dataset_layouts import EXPRESSIONS, make_dataset
from engine.media import masks
from engine.store import schema
from engine_runs import open_store, run_engine


@pytest.mark.parametrize("layout", ["ytvos", "mevis"])
def test_qa_from_a_dataset(endpoint, tmp_path, layout):
    root = tmp_path / layout
    gt = make_dataset(root, layout)
    data = tmp_path / "data"
    r = run_engine(endpoint, data, "--source", str(root), "--pipelines", "qa")
    assert r.exit_code == 0, r.output
    systems = {q.body["messages"][0]["content"][:40] for q in endpoint.work_requests()}
    assert all(s.startswith("You write question-answer pairs") for s in systems)  # only the QA writer was asked
    with open_store(data).session() as s:
        samples = s.query(schema.Sample).filter_by(data_type="qa").all()
        assert samples and {x.qa_type for x in samples} <= {"basic", "reasoning", "future"}
        objects = {o.id: o for o in s.query(schema.VideoObject)}
        assert {o.noun for o in objects.values()} == set(EXPRESSIONS.values())
        multi = [x for x in samples if len(x.object_ids) == 2]
        assert multi and "There are 2 objects in the video: <object0><region>, <object1><region>." in \
            multi[0].conversations[0]["value"]
        for smp in samples:
            for oid, entry in zip(smp.object_ids, smp.annotation):
                noun = next(k for k, v in EXPRESSIONS.items() if v == objects[oid].noun)
                for frame, value in entry.items():
                    expected = gt[noun][int(frame)]
                    seg = value["segmentation"]
                    got = masks.decode(seg) if seg is not None else np.zeros_like(expected)
                    assert np.array_equal(got, expected)


def test_dataset_text_is_neutralised_and_masks_of_another_size_never_stored(endpoint, tmp_path):
    import json

    from PIL import Image

    root = tmp_path / "ytvos"
    make_dataset(root, "ytvos")
    meta = json.loads((root / "meta_expressions.json").read_text())
    meta["videos"]["vid1"]["expressions"]["0"]["exp"] = "the <region> red square <video> moving right"
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    data = tmp_path / "data"
    r = run_engine(endpoint, data, "--source", str(root), "--pipelines", "qa")
    assert r.exit_code == 0, r.output
    with open_store(data).session() as s:
        nouns = {o.noun for o in s.query(schema.VideoObject)}
        assert "the region red square video moving right" in nouns
        for smp in s.query(schema.Sample):
            human, answer = (t["value"] for t in smp.conversations)
            assert human.count("<video>") == 1 and human.count("<region>") == len(smp.annotation)
            assert "<video>" not in answer and "<region>" not in answer
    # the same dataset with its palette masks at half the frames' size: the video fails, nothing is stored
    for png in sorted((root / "Annotations" / "vid1").glob("*.png")):
        im = Image.open(png)
        im.resize((im.width // 2, im.height // 2), Image.NEAREST).save(png)
    data = tmp_path / "data2"
    r = run_engine(endpoint, data, "--source", str(root), "--pipelines", "qa")
    assert r.exit_code == 1, r.output
    with open_store(data).session() as s:
        (f,) = s.query(schema.Failure).all()
        assert f.error_code == "segmentor_output" and "(24, 32)" in f.message and "(48, 64)" in f.message
        assert s.query(schema.Masklet).count() == 0 and s.query(schema.Sample).count() == 0
