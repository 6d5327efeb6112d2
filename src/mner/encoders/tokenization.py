"""Word-level tokenization: tweets as word lists -> sub-token ids plus each word's sub-token range.

Alignment goes through the fast tokenizer's ``word_ids()``. Some words produce no sub-token at all
(a lone U+FE0F variation selector, a zero-width space or joiner, U+FFFD, a non-breaking space: the
tokenizer's normaliser deletes them). Such a word would vanish and shift every label after it, so
it is encoded as the tokenizer's unknown token instead and counted (``WordBatch.num_replaced``).

Nothing of the tweet is truncated: a sequence may be longer than the model's limit (the text encoder
splits it into overlapping windows).

A second text segment (``context``: a caption read as text, the tweet being segment A) is placed
after the tweet's words with the tokenizer's own pair template (``[CLS] A [SEP] B [SEP]`` for BERT,
``<s> A </s></s> B </s>`` for MPNet), so every word keeps its sub-token positions. It carries no
word and no tag, and is cut to ``context_max_tokens`` sub-tokens (counted in
``WordBatch.num_context_cut``). Segment ids are not passed (every sub-token gets type 0), as for the
single-segment input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence

import torch

__all__ = ["Casing", "NUM_CASING_CLASSES", "casing_class", "WordBatch", "WordTokenizer"]


class Casing(IntEnum):
    """Casing class of a word, computed on the original (not lowercased) text.

    Letters are the characters with case; a single upper-case letter ("I", "A") is ``TITLE``.
    """

    PAD = 0         #: padding position (no word)
    LOWER = 1       #: all cased letters lower: "obama", "#tbt"
    UPPER = 2       #: two or more cased letters, all upper: "NYC", "RT"
    TITLE = 3       #: first cased letter upper, the others lower: "Obama", "@Nike", "I"
    MIXED = 4       #: any other mix: "iPhone", "McDonald"
    HAS_DIGIT = 5   #: contains a digit: "2015", "G20", "4th"
    NO_LETTERS = 6  #: no cased letter and no digit: "!", ":)", emoji, CJK, ""


NUM_CASING_CLASSES = len(Casing)


def casing_class(word: str) -> Casing:
    """The :class:`Casing` class of one word."""
    if any(c.isdigit() for c in word):
        return Casing.HAS_DIGIT
    cased = [c for c in word if c.isupper() or c.islower()]
    if not cased:
        return Casing.NO_LETTERS
    if all(c.islower() for c in cased):
        return Casing.LOWER
    if cased[0].isupper() and all(c.islower() for c in cased[1:]):
        return Casing.TITLE
    if all(c.isupper() for c in cased):
        return Casing.UPPER
    return Casing.MIXED


@dataclass
class WordBatch:
    """A batch of tokenized tweets.

    Attributes:
        input_ids: ``(B, S)`` sub-token ids with the special tokens, right-padded.
        attention_mask: ``(B, S)`` 1 for a real sub-token, 0 for padding.
        word_starts: ``(B, W)`` position in ``input_ids`` of each word's first sub-token.
        word_ends: ``(B, W)`` one past each word's last sub-token (``end > start`` always;
            padding words get ``[0, 1)``).
        word_mask: ``(B, W)`` bool, True for a real word.
        casing: ``(B, W)`` :class:`Casing` ids (``Casing.PAD`` for padding words).
        replaced: ``(B, W)`` bool, True for a word that produced no sub-token and was encoded as
            the unknown token.
        num_replaced: how many words of the batch were so replaced.
        num_context: how many tweets of the batch got a second segment (``context``).
        num_context_cut: how many of those segments were cut to ``context_max_tokens``.
        token_states: ``(B, S, H)`` the transformer's states of ``input_ids`` when they were computed
            outside the encoder (an exported backbone run by ONNX Runtime, :mod:`mner.backends`); the
            text encoder then only pools them into words. None (the tokenizer's output): the encoder
            runs its transformer.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    word_starts: torch.Tensor
    word_ends: torch.Tensor
    word_mask: torch.Tensor
    casing: torch.Tensor
    replaced: torch.Tensor
    num_replaced: int = 0
    token_states: torch.Tensor | None = None
    num_context: int = 0
    num_context_cut: int = 0

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> "WordBatch":
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return WordBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in fields.items()})


class WordTokenizer:
    """Wraps a *fast* Hugging Face tokenizer to tokenize word lists (see the module docstring).

    Args:
        tokenizer: a ``PreTrainedTokenizerFast``-style tokenizer (``word_ids()`` is needed).
    """

    def __init__(self, tokenizer) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                f"WordTokenizer needs a fast tokenizer (word_ids() aligns words to sub-tokens); "
                f"got {type(tokenizer).__name__}; load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        if tokenizer.pad_token_id is None:
            raise ValueError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no pad token; "
                             "set tokenizer.pad_token before wrapping it")
        self.tokenizer = tokenizer
        probe = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
        word_ids = probe.word_ids()
        first = next(i for i, w in enumerate(word_ids) if w is not None)
        last = max(i for i, w in enumerate(word_ids) if w is not None)
        self.num_prefix = first                         #: special tokens before the words ([CLS])
        self.num_suffix = len(word_ids) - last - 1      #: special tokens after the words ([SEP])
        self._pair = _pair_template(tokenizer)           #: specials before A, between A and B, after B

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> "WordTokenizer":
        """Load a tokenizer by hub name or folder (use :func:`~mner.encoders.offline.resolve_text_model`
        for the ``"minilm"`` / ``"mpnet"`` aliases)."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        if _needs_prefix_space(tokenizer) and "add_prefix_space" not in kwargs:
            # Byte-level BPE (RoBERTa, GPT-2) marks word starts with a space: pre-split words need it.
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, add_prefix_space=True, **kwargs)
        return cls(tokenizer)

    @property
    def unk_token(self) -> str | None:
        return self.tokenizer.unk_token

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def _encode(self, sentences: list[list[str]]):
        return self.tokenizer(
            sentences, is_split_into_words=True, add_special_tokens=True, truncation=False,
            padding=False, return_attention_mask=False, return_token_type_ids=False, verbose=False,
        )

    def __call__(self, words: Sequence[Sequence[str]], context: Sequence[str | None] | None = None,
                 context_max_tokens: int | None = None) -> WordBatch:
        """Tokenize a batch of tweets, each a sequence of words; ``context``: per tweet a text read as
        a second segment after the words (None or empty: none), cut to ``context_max_tokens``
        sub-tokens (None: not cut)."""
        sentences = [[str(w) for w in ws] for ws in words]
        if not sentences:
            raise ValueError("WordTokenizer: empty batch")
        if context is not None and len(context) != len(sentences):
            raise ValueError(f"WordTokenizer: {len(context)} context segments for {len(sentences)} tweets")
        encoded = self._encode(sentences)
        extras = self._context_ids(context) if context is not None else {}
        all_ids: list[list[int]] = []
        all_spans: list[list[tuple[int, int]]] = []
        all_replaced: list[list[bool]] = []
        num_cut = 0
        for i, ws in enumerate(sentences):
            ids, spans = encoded["input_ids"][i], _word_spans(encoded.word_ids(i), len(ws))
            replaced = [s is None for s in spans]
            if any(replaced):
                if self.unk_token is None:
                    missing = [ws[j] for j, r in enumerate(replaced) if r]
                    raise ValueError(f"batch item {i}: words {missing!r} produce no sub-token and the tokenizer "
                                     "has no unk token to stand for them; clean them out of the input")
                fixed = [self.unk_token if r else w for w, r in zip(ws, replaced)]
                again = self._encode([fixed])
                ids, spans = again["input_ids"][0], _word_spans(again.word_ids(0), len(ws))
                if any(s is None for s in spans):
                    raise ValueError(f"batch item {i}: the unk token {self.unk_token!r} produced no sub-token "
                                     f"for the words {[ws[j] for j, s in enumerate(spans) if s is None]!r}")
            ids = list(ids)
            if i in extras:
                extra = extras[i]
                if context_max_tokens is not None and len(extra) > context_max_tokens:
                    extra = extra[:context_max_tokens]
                    num_cut += 1
                _, between, after = self._pair
                ids = ids[: len(ids) - self.num_suffix] + between + extra + after
            all_ids.append(ids)
            all_spans.append(spans)  # type: ignore[arg-type]
            all_replaced.append(replaced)

        batch_size = len(sentences)
        seq_len = max(len(ids) for ids in all_ids)
        num_words = max(len(ws) for ws in sentences)
        input_ids = torch.full((batch_size, seq_len), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, seq_len), dtype=torch.long)
        starts = torch.zeros((batch_size, num_words), dtype=torch.long)
        ends = torch.ones((batch_size, num_words), dtype=torch.long)
        word_mask = torch.zeros((batch_size, num_words), dtype=torch.bool)
        casing = torch.full((batch_size, num_words), int(Casing.PAD), dtype=torch.long)
        replaced_t = torch.zeros((batch_size, num_words), dtype=torch.bool)
        for i, (ids, spans, replaced, ws) in enumerate(zip(all_ids, all_spans, all_replaced, sentences)):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
            n = len(ws)
            if n:
                starts[i, :n] = torch.tensor([s for s, _ in spans], dtype=torch.long)
                ends[i, :n] = torch.tensor([e for _, e in spans], dtype=torch.long)
                word_mask[i, :n] = True
                casing[i, :n] = torch.tensor([int(casing_class(w)) for w in ws], dtype=torch.long)
                replaced_t[i, :n] = torch.tensor(replaced, dtype=torch.bool)
        return WordBatch(input_ids, attention_mask, starts, ends, word_mask, casing, replaced_t,
                         num_replaced=int(replaced_t.sum()), num_context=len(extras), num_context_cut=num_cut)

    def _context_ids(self, context: Sequence[str | None]) -> dict[int, list[int]]:
        """The sub-token ids of each non-empty ``context`` text by its tweet's index, tokenized in one
        call; checks that the words keep their positions under the pair template."""
        texts = {i: text for i, text in enumerate(context) if text}
        if not texts:
            return {}
        if len(self._pair[0]) != self.num_prefix:
            raise ValueError(f"the tokenizer {getattr(self.tokenizer, 'name_or_path', '')!r} puts "
                             f"{len(self._pair[0])} special tokens before a pair's first segment and "
                             f"{self.num_prefix} before a single one: a second segment cannot be read with it")
        ids = self.tokenizer(list(texts.values()), add_special_tokens=False, truncation=False,
                             return_attention_mask=False, return_token_type_ids=False, verbose=False)["input_ids"]
        return dict(zip(texts, ids))


def _pair_template(tokenizer) -> tuple[list[int], list[int], list[int]]:
    """The special tokens of ``tokenizer``'s pair template: before segment A, between A and B, after B
    (``[CLS]``, ``[SEP]``, ``[SEP]`` for BERT; ``<s>``, ``</s></s>``, ``</s>`` for MPNet), read from
    the tokenizer itself."""
    probe = tokenizer("a", "b", add_special_tokens=True, return_attention_mask=False, return_token_type_ids=False)
    groups: list[list[int]] = [[], [], []]
    place = 0
    for tok, seq in zip(probe["input_ids"], probe.sequence_ids()):
        if seq is None:
            groups[place].append(tok)
        else:
            place = seq + 1
    return groups[0], groups[1], groups[2]


def _word_spans(word_ids: list[int | None], num_words: int) -> list[tuple[int, int] | None]:
    """``(first, last + 1)`` sub-token positions of each word, ``None`` for a word with none."""
    first: list[int | None] = [None] * num_words
    last: list[int | None] = [None] * num_words
    for pos, w in enumerate(word_ids):
        if w is None:
            continue
        if first[w] is None:
            first[w] = pos
        last[w] = pos
    return [None if f is None else (f, l + 1) for f, l in zip(first, last)]  # type: ignore[operator]


def _needs_prefix_space(tokenizer) -> bool:
    if getattr(tokenizer, "add_prefix_space", None) is not False:
        return False
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    return pre is not None and "ByteLevel" in repr(pre)
