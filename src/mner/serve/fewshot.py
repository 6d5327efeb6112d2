"""The few-shot side of the service: new entity types defined by a few annotated tweets.

``POST /fewshot/predict`` takes a support set of tweets whose entities are given as character
spans (what a person selects on the web page; offsets count Unicode code points, which the page
converts from its UTF-16 selection) and the tweet to tag:

    {"support": [{"text": "Pad thai at Nong's tonight", "entities": [{"start": 0, "end": 8, "type": "DISH"}]}],
     "text": "Green curry for lunch", "caption": null}

Each support tweet is tokenized as the pipeline tokenizes (:func:`mner.data.tokenize.tokenize_text`);
a word is inside an entity when its characters overlap the span; the words of an entity get
IOB2 tags. The few-shot model (``mner serve --fewshot CHECKPOINT``) is loaded once at start-up;
each request builds a :class:`~mner.fewshot.pipeline.FewShotPipeline` on its support set.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mner.data.example import Example
from mner.data.tokenize import tokenize_text
from mner.serve.limits import ServeConfig, ServeError, check_text

__all__ = ["FewShotRequest", "support_examples"]

TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,29}$")


class SpanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: int = Field(description="offset of the span's first character, in Unicode code points (Python "
                       "str indices, not JavaScript's UTF-16 units)")
    end: int = Field(description="offset after the span's last character (exclusive), in Unicode code points")
    type: str = Field(description="the new type's name, e.g. DISH")


class SupportTweet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    entities: list[SpanIn] = Field(default_factory=list)
    caption: str | None = None


class FewShotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    support: list[SupportTweet]
    text: str
    caption: str | None = None


def support_examples(req: FewShotRequest, cfg: ServeConfig) -> list[Example]:
    """The support tweets as tagged examples, or a :class:`ServeError` (422) naming the problem."""
    if not req.support:
        raise ServeError(422, "empty_support", "the support set is empty: annotate a few example tweets "
                         "(a span and its type in each)")
    if len(req.support) > cfg.max_batch_items:
        raise ServeError(422, "support_too_large", f"the support set has {len(req.support)} tweets, more than "
                         f"the limit of {cfg.max_batch_items}; a few of each type are enough")
    out = []
    for i, tw in enumerate(req.support):
        where = f"support[{i}]"
        check_text(tw.text, cfg, where)
        tokens, offsets = tokenize_text(tw.text)
        if not tokens:
            raise ServeError(422, "empty_support_tweet", f"{where}: the example tweet is empty; remove it or type one")
        tags = ["O"] * len(tokens)
        for j, e in enumerate(sorted(tw.entities, key=lambda e: e.start)):
            at = f"{where}.entities[{j}]"
            if not TYPE_NAME.match(e.type):
                raise ServeError(422, "bad_type_name", f"{at}: type {e.type!r} is not a name (letters, digits, _ "
                                 "or -, starting with a letter, at most 30); e.g. DISH")
            if not 0 <= e.start < e.end <= len(tw.text):
                raise ServeError(422, "bad_span", f"{at}: span {e.start}-{e.end} is not inside the tweet's "
                                 f"{len(tw.text)} characters")
            words = [k for k, (s, t) in enumerate(offsets) if s < e.end and t > e.start]
            if not words:
                raise ServeError(422, "bad_span", f"{at}: span {e.start}-{e.end} ({tw.text[e.start:e.end]!r}) "
                                 "covers no word; select a word")
            if any(tags[k] != "O" for k in words):
                raise ServeError(422, "overlapping_spans", f"{at}: span {tw.text[e.start:e.end]!r} overlaps "
                                 "another entity of the tweet; entities may not overlap")
            for n, k in enumerate(words):
                tags[k] = ("B-" if n == 0 else "I-") + e.type
        out.append(Example(f"support-{i}", tokens, tuple(tags), caption=tw.caption, text=tw.text, offsets=offsets))
    if all(t == "O" for ex in out for t in ex.tags):
        raise ServeError(422, "no_entity", "no example tweet has an entity: select a span in each and give its type")
    return out


def fewshot_info(model: Any) -> dict[str, Any]:
    return {"model_type": model.model_type, "views": list(model.views)}
