"""A yes/no answer's probability, read from the log-probabilities of the token that decides it.

A model's verbalised confidence ("confidence": 0.9) is known to be poorly calibrated; the probability its decoder
gave the answer token is a better score, and OpenAI, vLLM, SGLang and llama.cpp's server return it
(`logprobs` / `top_logprobs` on a chat completion; engine/llm/client.py keeps them as CallResult.logprobs).

The decision token is the first one of the value of `key` in a JSON answer ({"same_object": true ...}), or, in an
answer that has no such key (text mode: "Yes."), the first token that reads as an answer. At that position every
alternative is mapped to a side by its first word, case and any leading space or quote aside: a prefix of "true" or
"yes" (t, tr, " True", '"yes') is yes, of "false" or "no" is no, anything else neither; the probability of yes is
normalised over the two sides (a server may report probabilities before its grammar constrained the answer, so
alternatives that are not answers at all are left out rather than counted against either: llama.cpp's server does,
and its alternatives at the decision token start with "[" and '{"'). A side with no spelling among the alternatives
is not impossible, only less likely than the least likely one listed: its mass is taken as just under that one's
(a bound), so a missing "false" gives a score below 1, not 1. When the answer's own token is that least likely one
(llama.cpp's server appends the chosen token below its top alternatives), the score is a hair on the answer's side
of 0.5: the tokens say no more than that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

UNLISTED = 0.999  # of the least likely listed alternative's probability: a side that is not listed at all
YES = ("true", "yes")
NO = ("false", "no")
_WORD = re.compile(r"[A-Za-z]+")


def side(token: str) -> bool | None:
    """True for a spelling (or a start) of yes/true, False for no/false, None for anything else."""
    m = _WORD.search(token)
    if m is None or m.start() > 0 and token[: m.start()].strip(" \t\n\"':") != "":
        return None  # letters after something other than space, quote or colon: not an answer's start
    w = m.group().lower()
    yes, no = any(x.startswith(w) for x in YES), any(x.startswith(w) for x in NO)
    return None if yes == no else yes


def _decision(tokens: Sequence[Mapping[str, Any]], key: str) -> tuple[int, int] | None:
    """(index of the decision token, where in it the value starts), or None."""
    text, starts = "", []
    for t in tokens:
        starts.append(len(text))
        text += t["token"]
    m = re.search(rf'"{re.escape(key)}"\s*:\s*"?(?=[A-Za-z])', text)
    if m is not None:
        at = m.end()  # the value's first letter: the token that holds it decides
        i = max(j for j in range(len(tokens)) if starts[j] <= at)
        cut = at - starts[i]
        return i, cut if text[starts[i] : at].strip(" \t\n\"':") else 0  # a token that starts before the value
    if f'"{key}"' in text:
        return None  # the key is there, its value is not a word (null, a number): no decision token
    return next(((i, 0) for i, t in enumerate(tokens) if side(t["token"]) is not None), None)


def yes_probability(tokens: Sequence[Mapping[str, Any]] | None, key: str) -> float | None:
    """P(yes) of the answer's decision token, normalised over the yes and no alternatives; None when the answer has
    no decision token or no alternative of either side has a probability."""
    if not tokens:
        return None
    found = _decision(tokens, key)
    if found is None:
        return None
    i, cut = found
    chosen = tokens[i]
    alternatives = {a["token"]: a.get("logprob") for a in chosen.get("top_logprobs") or ()}
    alternatives.setdefault(chosen["token"], chosen.get("logprob"))
    if cut:  # the token holds the key too ('{"same_object": true'): each alternative read from the same place
        head = chosen["token"][:cut]
        alternatives = {t[cut:]: lp for t, lp in alternatives.items() if t.startswith(head)}
    mass = {True: 0.0, False: 0.0}
    listed = []
    for token, logprob in alternatives.items():
        if not isinstance(logprob, (int, float)) or not math.isfinite(logprob):
            continue
        listed.append(math.exp(logprob))
        s = side(token)
        if s is not None:
            mass[s] += listed[-1]
    if not mass[True] and not mass[False]:
        return None
    for s in (True, False):
        if not mass[s]:  # not listed: at most as likely as the least likely alternative listed, and below the side
            mass[s] = min(listed) * UNLISTED  # that was: the answer is on that side, so a tie must not flip it
    return mass[True] / (mass[True] + mass[False])
