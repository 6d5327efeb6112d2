"""The few-shot side of the service: new entity types defined by a few annotated tweets.

``POST /fewshot/predict`` takes a support set of tweets whose entities are given as character
spans (what a person selects on the web page; offsets count Unicode code points, which the page
converts from its UTF-16 selection) and the tweet to tag:

    {"support": [{"text": "Pad thai at Nong's tonight", "entities": [{"start": 0, "end": 8, "type": "DISH"}]}],
     "text": "Green curry for lunch", "caption": null}

Each support tweet is tokenized as the pipeline tokenizes (:func:`mner.data.tokenize.tokenize_text`);
a word is inside an entity when its characters overlap the span; the words of an entity get
IOB2 tags. The few-shot model (``mner serve --fewshot CHECKPOINT``) is loaded once at start-up;
each request builds a :class:`~mner.fewshot.pipeline.FewShotPipeline` on its support set. A
support tweet and the tweet to tag may carry an image (base64, as ``POST /predict`` takes it) and
a caption, read by a few-shot model with those views.

The page's support set travels as a file in the format ``mner fewshot predict --support`` reads
(JSONL: ``{"id", "tokens", "tags", "caption"?, "image"?, "text"?, "offsets"?}`` per line, the
tags IOB2, :meth:`mner.data.example.Example.to_dict`): :func:`support_jsonl` writes it from the
page's spans (the same conversion as a prediction), :func:`read_support_jsonl` reads one back
into spans (any tag scheme mner reads). An example's image travels by its file name only.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mner.data.example import Example
from mner.data.tokenize import tokenize_text
from mner.serve.limits import ServeConfig, ServeError, check_text

__all__ = ["FewShotRequest", "SupportSet", "fewshot_info", "read_support_jsonl", "support_examples", "support_jsonl"]

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
    caption: str | None = Field(None, description="a caption of the tweet's image (few-shot models with a caption view)")
    image: str | None = Field(None, description="the tweet's image, base64 (a data: URL prefix is allowed)")
    image_name: str | None = Field(None, description="the image's file name: kept in an exported support set "
                                   "(mner fewshot predict --images DIR finds it there)")


class FewShotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    support: list[SupportTweet]
    text: str
    caption: str | None = None
    image: str | None = Field(None, description="the image of the tweet to tag, base64")


class SupportSet(BaseModel):
    """``POST /fewshot/export``'s body: the page's support set."""

    model_config = ConfigDict(extra="forbid")
    support: list[SupportTweet]


def support_examples(req: FewShotRequest | SupportSet, cfg: ServeConfig) -> list[Example]:
    """The support tweets as tagged examples, or a :class:`ServeError` (422) naming the problem
    (``Example.image`` is the image's file name; the decoded images are the caller's)."""
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
        out.append(Example(f"support-{i + 1}", tokens, tuple(tags), caption=tw.caption, text=tw.text, offsets=offsets,
                           image=tw.image_name or None))
    if all(t == "O" for ex in out for t in ex.tags):
        raise ServeError(422, "no_entity", "no example tweet has an entity: select a span in each and give its type")
    return out


def fewshot_info(model: Any, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """What the page says of the few-shot model: its kind, views and the folder it was loaded from."""
    return {"model_type": model.model_type, "views": list(model.views),
            "name": Path(checkpoint).name if checkpoint is not None else model.model_type,
            "checkpoint": str(checkpoint) if checkpoint is not None else None}


def support_jsonl(examples: list[Example]) -> str:
    """The support set as the JSONL ``mner fewshot predict --support`` reads (one line a tweet)."""
    return "".join(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n" for ex in examples)


def read_support_jsonl(raw: str, cfg: ServeConfig, name: str = "the file") -> list[dict[str, Any]]:
    """A support set file (JSONL, as :func:`support_jsonl` writes or ``mner fewshot predict
    --support`` reads) as the page's tweets: ``{"text", "entities": [{"start", "end", "type"}],
    "caption", "image_name"}``, offsets in code points. Problems are 422s naming the line."""
    from mner.data.formats import read_jsonl
    from mner.errors import MNERError
    from mner.fewshot.pipeline import support_tags
    from mner.tagging import get_spans

    with tempfile.TemporaryDirectory(prefix="mner-support-") as tmp:
        path = Path(tmp) / "support.jsonl"
        path.write_text(raw, encoding="utf-8")
        try:
            examples = read_jsonl(path)
            tags = [support_tags(ex) if ex.tags is not None else None for ex in examples]
        except (MNERError, ValueError) as err:
            message = str(err).replace(str(path), name)
            raise ServeError(422, "bad_support_file", f"{message}; load a file saved by this page or written "
                             "for mner fewshot predict --support (JSONL with tokens and tags)") from None
    if not examples:
        raise ServeError(422, "empty_support", f"{name} holds no tweet: one JSON object a line, with tokens and tags")
    if len(examples) > cfg.max_batch_items:
        raise ServeError(422, "support_too_large", f"{name} has {len(examples)} tweets, more than the limit of "
                         f"{cfg.max_batch_items}; a few of each type are enough")
    out = []
    for n, (ex, iob) in enumerate(zip(examples, tags), 1):
        if iob is None:
            raise ServeError(422, "bad_support_file", f"{name}, tweet {n} ({ex.id}): no tags; a support tweet "
                             "needs one tag per token")
        entities = []
        for span in get_spans(list(iob), mode="conlleval"):
            if not TYPE_NAME.match(span.label):
                raise ServeError(422, "bad_type_name", f"{name}, tweet {n} ({ex.id}): type {span.label!r} is not "
                                 "a name (letters, digits, _ or -, starting with a letter, at most 30)")
            entities.append({"start": ex.offsets[span.start][0], "end": ex.offsets[span.end - 1][1],
                             "type": span.label})
        check_text(ex.text, cfg, f"{name}, tweet {n}")
        out.append({"text": ex.text, "entities": entities, "caption": ex.caption, "image_name": ex.image})
    return out
