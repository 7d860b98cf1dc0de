"""A yes/no answer's probability from its decision token (engine/llm/logprobs.py): the spellings of either side,
split tokens, text answers, a side missing from the alternatives, and answers recorded from llama-cpp-python's real
server (tests/engine/llm/data/llamacpp_logprobs.json: its chat completions with `logprobs` and `top_logprobs`,
whose probabilities come before the grammar, so tokens that are no answer lead the alternatives)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.llm.client import _token_logprobs
from engine.llm.logprobs import side, yes_probability

RECORDED = json.loads((Path(__file__).parent / "data" / "llamacpp_logprobs.json").read_text())


def tok(token: str, p: float = 1.0, alternatives: dict[str, float] | None = None) -> dict:
    alts = alternatives if alternatives is not None else {token: p}
    return {
        "token": token,
        "logprob": math.log(p),
        "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in alts.items()],
    }


def json_answer(decision: dict) -> list[dict]:
    return [tok("{"), tok('"'), tok("same"), tok("_object"), tok('":'), decision, tok(","), tok(' "rationale": "x"}')]


@pytest.mark.parametrize(
    ("token", "want"),
    [
        ("true", True),
        (" true", True),
        ("True", True),
        ('"yes', True),
        ("tr", True),
        ("Y", True),
        (" false", False),
        ("False", False),
        ("no", False),
        (" N", False),
        ("f", False),
        ("[", None),
        ('{"', None),
        ("null", None),
        ("1", None),
        ("the", None),
        ("", None),
        ("x true", None),  # letters after something other than space, quote or colon
    ],
)
def test_each_spelling_reads_as_its_side(token, want):
    assert side(token) is want


def test_the_decision_token_normalises_over_both_sides_spellings_and_ignores_the_rest():
    decision = tok(" true", 0.5, {" true": 0.5, "true": 0.1, " false": 0.2, "False": 0.05, "[": 0.15})
    assert yes_probability(json_answer(decision), "same_object") == pytest.approx(0.6 / 0.85)


def test_a_value_split_over_tokens_and_a_text_answer_are_read_from_their_first_token():
    tokens = [tok('{"same_object": '), tok("tr", 0.7, {"tr": 0.7, "fal": 0.3}), tok("ue"), tok("}")]
    assert yes_probability(tokens, "same_object") == pytest.approx(0.7)
    text = [tok("No", 0.55, {"No": 0.55, "Yes": 0.15, "The": 0.05}), tok(".")]
    assert yes_probability(text, "same_object") == pytest.approx(0.15 / 0.70)
    # the key and its value in one token: the token holding the value's first letter decides
    merged = [tok('{"same_object": false', 0.9, {'{"same_object": false': 0.9, '{"same_object": true': 0.1})]
    assert yes_probability(merged, "same_object") == pytest.approx(0.1)


def test_a_side_missing_from_the_alternatives_counts_as_the_least_likely_one_listed():
    decision = tok("true", 0.06, {"[": 0.41, '{"': 0.12, "{": 0.09, "true": 0.06})
    p = yes_probability(json_answer(decision), "same_object")
    assert p == pytest.approx(0.06 / (0.06 + 0.06 * 0.999)) and p > 0.5  # a tie stays on the answer's side
    assert yes_probability(json_answer(tok("true", 0.06, {"[": 0.4, "true": 0.06, "{": 0.02})), "same_object") == (
        pytest.approx(0.06 / (0.06 + 0.02 * 0.999))
    )
    only_false = tok("false", 0.001, {"[": 0.4, '{"': 0.2, "false": 0.001})  # appended below the top, as llama.cpp
    assert 0.49 < yes_probability(json_answer(only_false), "same_object") < 0.5


def test_no_decision_token_gives_no_score():
    assert yes_probability(None, "same_object") is None
    assert yes_probability([], "same_object") is None
    assert yes_probability([tok('{"same_object": null}')], "same_object") is None
    assert yes_probability([tok("Maybe"), tok(".")], "same_object") is None


def test_llama_cpp_servers_recorded_answers():
    """What the real server returned (0.3.36, SmolLM2-135M): its decision token `true` with `false` among 20
    alternatives but not among 5, after non-JSON tokens; P(true) normalised over the two sides."""
    twenty = _token_logprobs(RECORDED["json_object_schema_top20"]["response"]["choices"][0]["logprobs"])
    assert twenty is not None and "".join(t["token"] for t in twenty).startswith('{"same_object":true')
    entry = next(t for t in twenty if t["token"] == "true")
    ranked = [a["token"] for a in entry["top_logprobs"]]
    assert ranked[0] == "[" and "false" in ranked and ranked.index("false") > ranked.index("true")
    p = yes_probability(twenty, "same_object")
    assert p == pytest.approx(0.807, abs=0.01)
    five = _token_logprobs(RECORDED["json_object_schema_top5"]["response"]["choices"][0]["logprobs"])
    p5 = yes_probability(five, "same_object")
    assert p5 is not None and p5 < 1.0  # false is not listed: bounded by the least likely alternative, not 0
    text = _token_logprobs(RECORDED["text_top20"]["response"]["choices"][0]["logprobs"])
    assert text is not None and text[0]["token"] == "No"
    assert yes_probability(text, "same_object") == pytest.approx(0.146 / (0.146 + 0.553), abs=0.02)
    other = _token_logprobs(RECORDED["json_object_schema_top20_no_match"]["response"]["choices"][0]["logprobs"])
    assert 0.5 < yes_probability(other, "same_object") < 1.0


def test_the_client_keeps_only_a_well_formed_logprobs_content():
    assert _token_logprobs(None) is None
    assert _token_logprobs({"content": None, "refusal": None}) is None
    assert _token_logprobs({"tokens": ["a"], "token_logprobs": [-0.1]}) is None  # the completions shape
    assert _token_logprobs({"content": [{"token": 3}]}) is None
    kept = _token_logprobs({"content": [{"token": "a", "logprob": -0.1, "bytes": None, "top_logprobs": None}]})
    assert kept == [{"token": "a", "logprob": -0.1, "top_logprobs": []}]
