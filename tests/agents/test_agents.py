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
    for name in (
        "captioner",
        "analyzer",
        "annotator_dynamic",
        "annotator_static",
        "reviewer_region",
        "reviewer_judge",
        "reviewer_direct",
        "refiner_detailed",
        "refiner_qa",
    ):
        p = load(name)
        assert p.version and p.system and p.user and p.tag == f"{name}@{p.version}"


def test_analyzer_prompt_carries_the_caption_and_parse_normalizes():
    agent = AnalyzerAgent()
    msgs = agent.prompt(AnalyzeItem("A man rows a boat past two swans."))
    assert msgs[0]["role"] == "system" and "A man rows a boat past two swans." in msgs[1]["content"]
    out = agent.parse(AnalyzeItem(""), Nouns(subject="The Men", others=["boats", "Boat", "swans", "man", "", "bus"]))
    assert out.subject == "man" and out.others == ["boat", "swan", "bus"]  # singular, deduplicated, subject apart
    assert out.nouns == ["man", "boat", "swan", "bus"]


@pytest.mark.parametrize(
    "raw, noun",
    [
        ("Red Cars", "red car"),
        ("buses", "bus"),
        ("bus", "bus"),
        ("a dog.", "dog"),
        ("the two children", "child"),
        ("   ", ""),
    ],
)
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
    scored = Judge().parse(item, Verdict(same_object=True, confidence=0.8, rationale="same\nbrown   dog"))
    assert scored.verdict.same_object and scored.verdict.rationale == "same brown dog"
    # no log-probabilities: the verbalised confidence is the score, as P(same object)
    assert (scored.source, scored.p_same, scored.token_p_same) == ("verbal", 0.8, None)
    no = Judge().parse(item, Verdict(same_object=False, confidence=0.8, rationale="other"))
    assert no.p_same == pytest.approx(0.2)
    assert (Judge.mode, DirectReviewer.mode) == ("paper", "direct")
    # a cascade's judge: its own endpoint and role, the same prompt
    small = Judge("judge.small", "small")
    assert (small.endpoint, small.role, small.name) == ("judge.small", "reviewer.judge.small", "small")
    assert (Judge().endpoint, Judge().role, Judge().name) == ("reviewer", "reviewer.judge", "reviewer")
    assert DirectReviewer("judge.big", "big").role == "reviewer.direct.big"


def test_refiner_detailed_and_qa_parse():
    assert "Appearance: brown" in RefinerAgent().prompt(RefineItem("dog", "brown", "runs"))[1]["content"]
    item = QAItem((QAObject("dog", "a brown dog"), QAObject("red ball", "a red ball")))
    prompt = QAWriter().prompt(item)
    assert prompt[1]["content"] == "Object 1 (dog): a brown dog\nObject 2 (red ball): a red ball"
    assert "Object 1, Object 2" in prompt[0]["content"] and "<object" not in str(prompt)  # tags are the engine's
    result = QAWriter().parse(
        item,
        QASet(
            pairs=[
                QAPair(type="future", question="Will Object 1 (dog) catch [2]?", answer="Probably, object 1 is fast."),
                QAPair(type="basic", question="What colour is it?", answer="Brown."),  # names no object: dropped
                QAPair(
                    type="basic", question="Where is the brown dog relative to the red ball?", answer="Left of it."
                ),
                QAPair(type="basic", question="Is object 1 near object 2?", answer="Yes."),  # second basic: dropped
                QAPair(
                    type="reasoning", question="Why does <object0> chase <region> the ball?", answer="Play <video>."
                ),
            ]
        ),
    )
    assert [(p.type, p.question, p.answer) for p in result.pairs] == [
        ("basic", "Where is <object0> relative to <object1>?", "Left of it."),
        ("reasoning", "Why does <object0> chase region <object1>?", "Play video."),  # tokens neutralised
        ("future", "Will <object0> catch <object1>?", "Probably, <object0> is fast."),
    ]
    assert result.dropped == {"names_no_object": 1, "type_not_asked": 1}  # one basic was asked for, two came
    # no usable pair is not an error (no retry): the unit ends with nothing, counted
    none = QAWriter().parse(item, QASet(pairs=[QAPair(type="basic", question="What?", answer="A.")]))
    assert none.pairs == [] and none.dropped == {"names_no_object": 1}
    # one object: its own words for it ("he", "the man") can only mean it; a question about nothing is dropped
    one = QAItem((QAObject("cyclist", "a man on a bike"),))
    single = QAWriter().parse(
        one,
        QASet(
            pairs=[
                QAPair(type="basic", question="What is the man's name?", answer="Unknown."),
                QAPair(type="future", question="Where will he ride?", answer="Down the road."),
                QAPair(type="reasoning", question="Why?", answer="Because."),
                QAPair(type="reasoning", question="Why does the cyclist lean?", answer="To turn."),
            ]
        ),
    )
    assert [(p.type, p.question) for p in single.pairs] == [
        ("basic", "What is the man's name?"),
        ("reasoning", "Why does <object0> lean?"),
        ("future", "Where will he ride?"),
    ]
    assert single.dropped == {"names_no_object": 1}
    # as many of a type as were asked for (the configured mix decides which)
    asked = QAItem(one.objects, ("basic", "basic", "future"))
    assert (
        "Write exactly 3 pairs, of these types in this order: basic, basic, future"
        in QAWriter().prompt(asked)[0]["content"]
    )
    got = QAWriter().parse(
        asked,
        QASet(
            pairs=[
                QAPair(type=t, question=f"Is the cyclist {t}?", answer="Yes.")
                for t in ("basic", "future", "basic", "basic", "reasoning")
            ]
        ),
    )
    assert [p.type for p in got.pairs] == ["basic", "basic", "future"]
    assert got.dropped == {"type_not_asked": 2}


def test_qa_references_are_mapped_only_when_unambiguous():
    from agents.refiner import tag_objects

    two_people = ["person", "person"]
    assert tag_objects("Is the person left of the person?", two_people) == "Is the person left of the person?"
    assert tag_objects("Is object 2 left of Object 1?", two_people) == "Is <object1> left of <object0>?"
    assert tag_objects("What does object 3 do?", two_people) == "What does object 3 do?"  # no such object
    assert tag_objects("<object7> and <object1>", two_people) == "object7 and <object1>"  # out of range: plain
    # 'the ... noun' spans at most two plain words: 'the dog chases the ball' is not one reference
    assert tag_objects("the dog chases the ball", ["ball", "cat"]) == "the dog chases <object0>"
    assert tag_objects("the traffic lights turn red", ["traffic light"]) == "<object0> turn red"
    assert tag_objects("the car and the red car", ["car", "red car"]) == "the car and <object1>"  # 'car' ambiguous
