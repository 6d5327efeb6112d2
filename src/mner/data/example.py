"""The one record every step of mner passes along: a tweet, its tags and its image.

Data flows one way: file -> :class:`Example` -> batch -> model -> tags -> entity spans.
An :class:`Example` is immutable; readers build it, nothing downstream changes it (use
:meth:`Example.replace` to derive a new one).

Text and character offsets
--------------------------
Benchmark files hold tokens, not text. When no text is given, the text is *reconstructed*
by joining the tokens with one space, and ``offsets[i]`` is the ``(start, end)`` character
range of token ``i`` in that text (``text[start:end] == tokens[i]``). When a text is given
(e.g. raw input tokenized by :func:`mner.data.tokenize.tokenize_text`), offsets point into it.

Every string of an example is Unicode text: one holding an unpaired surrogate (a JSON ``\\ud800``
escape without its pair, or bytes that are not UTF-8 read with ``surrogateescape``) cannot be
tokenized, encoded or written, and is refused where the example is made, with a
:class:`TextError` (an :class:`~mner.errors.MNERError` and a ``ValueError``) naming the field.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mner.errors import MNERError

__all__ = ["Example", "TextError", "reconstruct_text", "surrogate_problem"]

_SURROGATE = re.compile("[\ud800-\udfff]")


class TextError(MNERError, ValueError):
    """A string that is not Unicode text: it holds an unpaired surrogate (``"\\ud800"`` in JSON
    without its pair, or bytes that were not UTF-8 decoded with ``surrogateescape``). Such a
    string cannot be encoded, tokenized or written; it is refused where it enters."""

    def __init__(self, where: str, detail: str):
        self.where, self.detail = where, detail
        super().__init__(f"{where}: {detail}")

    def __reduce__(self):  # crosses to another process as it is
        return (type(self), (self.where, self.detail))


def surrogate_problem(value: str) -> str | None:
    """Why ``value`` is not Unicode text (``"an unpaired surrogate U+D800 at character 6"``), or
    None when it is."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return f"an unpaired surrogate U+{ord(found.group()):04X} at character {found.start()}"


def reconstruct_text(tokens: Sequence[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Join ``tokens`` with single spaces; return the text and each token's char range."""
    offsets = []
    pos = 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), tuple(offsets)


@dataclass(frozen=True)
class Example:
    """One tweet (or any short text) with optional tags, image and caption.

    Attributes:
        id: tweet / image id as found in the file (``IMGID:<id>``), unique within a split.
        tokens: the words, exactly as in the file.
        tags: one tag per token (e.g. IOB2 ``B-PER``), or ``None`` for unlabelled input.
        image: a path to the image file, an image id to be resolved by an
            :class:`~mner.data.images.ImageStore`, or ``None`` (no image).
        caption: an image-derived caption (e.g. BLIP-2), or ``None``.
        text: the text the offsets point into (reconstructed when not given).
        offsets: ``(start, end)`` char range of each token in ``text``.
        source: where the example came from, ``"file:line"``, for error messages.
    """

    id: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None = None
    image: str | None = None
    caption: str | None = None
    text: str = ""
    offsets: tuple[tuple[int, int], ...] = ()
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if self.tags is not None:
            object.__setattr__(self, "tags", tuple(self.tags))
            if len(self.tags) != len(self.tokens):
                raise ValueError(
                    f"{self.where}: {len(self.tokens)} tokens but {len(self.tags)} tags; "
                    "give exactly one tag per token"
                )
        self._check_unicode()
        if isinstance(self.image, Path):
            object.__setattr__(self, "image", str(self.image))
        if not self.offsets and not self.tokens:
            pass  # no token: any text (e.g. only spaces) has no token in it; nothing to place
        elif not self.offsets:
            text, offsets = reconstruct_text(self.tokens)
            if self.text and self.text != text:
                raise ValueError(
                    f"{self.where}: a text was given without token offsets; "
                    "pass offsets too (mner.data.tokenize_text builds both)"
                )
            object.__setattr__(self, "text", text)
            object.__setattr__(self, "offsets", offsets)
        else:
            offsets = tuple((int(s), int(e)) for s, e in self.offsets)
            object.__setattr__(self, "offsets", offsets)
            if len(offsets) != len(self.tokens):
                raise ValueError(
                    f"{self.where}: {len(self.tokens)} tokens but {len(offsets)} offsets"
                )
            for tok, (s, e) in zip(self.tokens, offsets):
                if not (0 <= s <= e <= len(self.text)):
                    raise ValueError(
                        f"{self.where}: offset ({s}, {e}) of token {tok!r} lies outside "
                        f"the text of length {len(self.text)}"
                    )

    def _check_unicode(self) -> None:
        """Every string is Unicode text: a :class:`TextError` names the field otherwise."""
        strings = [v for v in (self.id, self.text, self.image, self.caption) if isinstance(v, str)]
        strings += [v for v in self.tokens + (self.tags or ()) if isinstance(v, str)]
        if _SURROGATE.search("".join(strings)) is None:  # one search in the common case
            return
        named = [("its id", self.id), ("its text", self.text), ("its image", self.image),
                 ("its caption", self.caption)]
        named += [(f"token {i}", t) for i, t in enumerate(self.tokens)]
        named += [(f"tag {i}", t) for i, t in enumerate(self.tags or ())]
        name, problem = next((n, p) for n, v in named if isinstance(v, str) and (p := surrogate_problem(v)))
        where = f"tweet {self.id!r}" + (f" ({self.source})" if self.source else "")
        raise TextError(where, f"{name} holds {problem} (not Unicode text: a JSON \\ud800-style escape without its "
                               "pair, or bytes that are not UTF-8); fix it in the input")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def where(self) -> str:
        """``"tweet <id> (file:line)"``: how error messages name this example (an id holding a line
        break, a TAB or another invisible character is quoted, so that a message stays one line)."""
        ident = self.id if self.id.isprintable() else repr(self.id)
        return f"tweet {ident}" + (f" ({self.source})" if self.source else "")

    def replace(self, **changes) -> "Example":
        """A copy with some fields changed (offsets are rebuilt when tokens change)."""
        if "tokens" in changes and "offsets" not in changes:
            changes.setdefault("text", "")
            changes["offsets"] = ()
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready dict (the JSONL format of :mod:`mner.data.formats`)."""
        d: dict = {"id": self.id, "tokens": list(self.tokens)}
        if self.tags is not None:
            d["tags"] = list(self.tags)
        if self.image is not None:
            d["image"] = self.image
        if self.caption is not None:
            d["caption"] = self.caption
        reconstructed, _ = reconstruct_text(self.tokens)
        if self.text != reconstructed:
            d["text"] = self.text
            d["offsets"] = [list(o) for o in self.offsets]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None) -> "Example":
        return cls(
            id=d["id"],
            tokens=tuple(d["tokens"]),
            tags=tuple(d["tags"]) if d.get("tags") is not None else None,
            image=d.get("image"),
            caption=d.get("caption"),
            text=d.get("text", "") if d.get("offsets") else "",
            offsets=tuple(tuple(o) for o in d.get("offsets", ())),
            source=source,
        )
