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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = ["Example", "reconstruct_text"]


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

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def where(self) -> str:
        """``"tweet <id> (file:line)"``: how error messages name this example."""
        return f"tweet {self.id}" + (f" ({self.source})" if self.source else "")

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
