"""Agents: prompt() and parse() on fixed inputs, no network."""

import pytest

from agents.analyzer import AnalyzeItem, AnalyzerAgent, Nouns, normalize_noun
from agents.annotator import AnnotateItem, AnnotatorAgent, ObjectDescription
from agents.captioner import Caption, CaptionerAgent, CaptionItem
from agents.prompt import load
from agents.refiner import QAItem, QAObject, QAPair, QASet, QAWriter, RefineItem, RefinerAgent
from agents.reviewer import DirectReviewer, Judge, JudgeItem, RegionDescriber, RegionItem, Verdict

IMG = "sha256:" + "0" * 64


def test_every_prompt_file_has_a_version_and_both_parts():
    for name in ("captioner", "analyzer", "annotator_dynamic", "annotator_static", "reviewer_region",
                 "reviewer_judge", "reviewer_direct", "refiner_detailed", "refiner_qa"):
        p = load(name)
        assert p.version and p.system and p.user and p.tag == f"{name}@{p.version}"


def test_analyzer_prompt_carries_the_caption_and_parse_normalizes():
    agent = AnalyzerAgent()
    msgs = agent.prompt(AnalyzeItem("A man rows a boat past two swans."))
    assert msgs[0]["role"] == "system" and "A man rows a boat past two swans." in msgs[1]["content"]
    out = agent.parse(AnalyzeItem(""), Nouns(subject="The Men", others=["boats", "Boat", "swans", "man", "", "bus"]))
    assert out.subject == "man" and out.others == ["boat", "swan", "bus"]  # singular, deduplicated, subject apart
    assert out.nouns == ["man", "boat", "swan", "bus"]


@pytest.mark.parametrize("raw, noun", [("Red Cars", "red car"), ("buses", "bus"), ("bus", "bus"), ("a dog.", "dog"),
                                       ("the two children", "child"), ("   ", "")])
def test_normalize_noun(raw, noun):
    assert normalize_noun(raw) == noun


def test_annotator_queries_frames_and_overlay_note():
    dyn, sta = AnnotatorAgent("dynamic"), AnnotatorAgent("static")
    assert (dyn.kind, sta.kind) == ("motion", "appearance")
    msgs = dyn.prompt(AnnotateItem("dog", (IMG, IMG), overlay=True))
    text = msgs[1]["content"][0]["text"]
    assert "actions and movements of the dog" in text and "These 2 frames" in text and "coloured mask" in text
    assert [p["image_url"]["url"] for p in msgs[1]["content"][1:]] == [IMG, IMG]
    assert "coloured mask" not in sta.prompt(AnnotateItem("dog", (IMG,)))[1]["content"][0]["text"]
    assert dyn.parse(None, ObjectDescription(description="  It  runs.\n")) == "It runs."
    with pytest.raises(ValueError):
        dyn.parse(None, ObjectDescription(description=" "))


def test_captioner():
    agent = CaptionerAgent()
    assert len(agent.prompt(CaptionItem((IMG,) * 16))[1]["content"]) == 17
    assert agent.parse(None, Caption(caption=" A  man. ")) == "A man."


def test_reviewer_paper_and_direct():
    assert RegionDescriber().prompt(RegionItem(IMG))[1]["content"][1]["image_url"]["url"] == IMG
    item = JudgeItem("dog", "a brown dog", "a small brown dog", "it runs", (IMG, IMG))
    judge_text = Judge().prompt(item)[1]["content"]
    assert "a brown dog" in judge_text and "a small brown dog" in judge_text and "it runs" in judge_text
    direct = DirectReviewer().prompt(item)
    assert direct[1]["content"][0]["text"].count("dog") >= 1 and len(direct[1]["content"]) == 3
    v = Judge().parse(item, Verdict(same_object=True, confidence=0.8, rationale="same\nbrown   dog"))
    assert v.same_object and v.rationale == "same brown dog"
    assert (Judge.mode, DirectReviewer.mode) == ("paper", "direct")


def test_refiner_detailed_and_qa_parse():
    assert "Appearance: brown" in RefinerAgent().prompt(RefineItem("dog", "brown", "runs"))[1]["content"]
    item = QAItem((QAObject("dog", "a brown dog"), QAObject("ball", "a red ball")))
    assert "<object0> (dog): a brown dog" in QAWriter().prompt(item)[1]["content"]
    pairs = QAWriter().parse(item, QASet(pairs=[
        QAPair(type="future", question="Will <object0> catch <object1>?", answer="Probably."),
        QAPair(type="basic", question="What colour is <object0>?", answer="Brown."),  # misses <object1>: dropped
        QAPair(type="basic", question="Where is <object0> relative to <object1>?", answer="Left of it."),
        QAPair(type="basic", question="Is <object0> near <object1>?", answer="Yes."),  # second basic: dropped
        QAPair(type="reasoning", question="Why does <object0> chase <object1> <region>?", answer="Play."),  # markup
    ]))
    assert [(p.type, p.question) for p in pairs] == [("basic", "Where is <object0> relative to <object1>?"),
                                                     ("future", "Will <object0> catch <object1>?")]
    with pytest.raises(ValueError, match="no usable QA pair"):
        QAWriter().parse(item, QASet(pairs=[QAPair(type="basic", question="What?", answer="A.")]))
