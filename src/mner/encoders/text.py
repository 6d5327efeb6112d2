"""The text encoder: a pretrained transformer turned into one feature vector per word.

``TextEncoder(config)`` loads ``config.name`` (``"minilm"``, ``"mpnet"``, a hub name or a folder,
see :mod:`mner.encoders.offline`) and maps a :class:`~mner.encoders.tokenization.WordBatch` to
:class:`~mner.encoders.features.WordFeatures`:

* word vector = the state of the word's first sub-token (``pooling="first"``, as in BERT NER) or
  the mean over its sub-tokens (``pooling="mean"``), then a learned casing embedding
  concatenated (the offline encoders lowercase their input, so casing reaches the model this way);
* sentence vector = the state of the first special token, ``t_0`` (MAF uses ``tanh(t_0)``).

Long inputs: a sequence longer than the model's limit is cut into overlapping windows of content
sub-tokens, each wrapped in the special tokens and run as one batch; every sub-token takes its state
from the window where it has the most context on its nearer side (see :func:`plan_windows`); the
leading special tokens (so ``sentence``) come from the first window, the trailing ones from the last.
A batch within the limit is one plain forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from mner.encoders.features import WordFeatures
from mner.encoders.frozen import FrozenBackboneMixin
from mner.encoders.offline import resolve_text_model
from mner.encoders.tokenization import NUM_CASING_CLASSES, Casing, WordBatch, WordTokenizer

__all__ = ["TextEncoderConfig", "TextEncoder", "plan_windows", "model_max_length", "run_in_windows"]

# Models whose position ids start after the padding index (RoBERTa-style): the usable length is
# max_position_embeddings - (pad_token_id + 1).
_OFFSET_POSITION_MODELS = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer", "data2vec-text",
    "ibert", "luke", "markuplm", "roberta-prelayernorm",
})
_NO_LIMIT = 10**6


@dataclass
class TextEncoderConfig:
    """How to build a :class:`TextEncoder`.

    Attributes:
        name: ``"minilm"`` (offline default), ``"mpnet"``, a hub name (``"bert-base-cased"``) or a folder;
            a full CLIP checkpoint (``"openai/clip-vit-base-patch32"``) gives its text tower.
        pooling: word vector from the ``"first"`` sub-token or the ``"mean"`` of its sub-tokens.
        casing_dim: size of the casing embedding concatenated to each word vector; 0 disables it.
        window_overlap: content sub-tokens shared by two consecutive windows of a long input;
            ``None`` = half a window.
        max_length: sub-tokens per model call, special tokens included; ``None`` = the model's limit
            (``max_position_embeddings`` and the tokenizer's ``model_max_length``). Lower it to save memory.
        trainable: fine-tune the transformer (False freezes it: no gradient, always in eval mode).
            The casing embedding is new and always trainable.
    """

    name: str = "minilm"
    pooling: Literal["first", "mean"] = "first"
    casing_dim: int = 16
    window_overlap: int | None = None
    max_length: int | None = None
    trainable: bool = True

    def __post_init__(self) -> None:
        if self.pooling not in ("first", "mean"):
            raise ValueError(f"TextEncoderConfig.pooling must be 'first' or 'mean', not {self.pooling!r}")
        if self.casing_dim < 0:
            raise ValueError(f"TextEncoderConfig.casing_dim must be >= 0, not {self.casing_dim}")
        if self.window_overlap is not None and self.window_overlap < 0:
            raise ValueError(f"TextEncoderConfig.window_overlap must be >= 0, not {self.window_overlap}")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"TextEncoderConfig.max_length must be >= 3, not {self.max_length}")


def model_max_length(model_config, tokenizer=None) -> int:
    """The most sub-tokens (special tokens included) one forward pass of the model accepts."""
    limits = []
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:
        if getattr(model_config, "model_type", "") in _OFFSET_POSITION_MODELS:
            positions -= (getattr(model_config, "pad_token_id", None) or 0) + 1
        limits.append(int(positions))
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit and tok_limit < _NO_LIMIT:
        limits.append(int(tok_limit))
    return min(limits) if limits else 512


def plan_windows(length: int, size: int, overlap: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Cover ``length`` content sub-tokens with windows of ``size``; choose each sub-token's window.

    Windows start every ``size - overlap`` sub-tokens; the last one ends at ``length``. A sub-token's
    context in a window is its distance to the nearer window edge, where an edge that is also the
    sequence's own start or end counts as unlimited context. Each sub-token takes the window where
    that context is largest (the earlier window on a tie).

    Returns:
        ``spans``: ``[(start, end), ...]`` of each window; ``owner``: the window index of each sub-token.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"plan_windows: need size >= 1 and 0 <= overlap < size; got size={size}, overlap={overlap}")
    if length <= size:
        return [(0, length)], [0] * length
    stride = size - overlap
    starts = list(range(0, length - size, stride)) + [length - size]
    spans = [(a, a + size) for a in starts]
    owner = []
    for j in range(length):
        best, best_score = -1, -1
        for k, (a, e) in enumerate(spans):
            if not a <= j < e:
                continue
            left = j - a if a > 0 else length
            right = e - 1 - j if e < length else length
            score = min(left, right)
            if score > best_score:
                best, best_score = k, score
        owner.append(best)
    return spans, owner


def run_in_windows(run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], input_ids: torch.Tensor,
                   attention_mask: torch.Tensor, *, num_prefix: int, num_suffix: int, window_size: int,
                   overlap: int, pad_token_id: int) -> torch.Tensor:
    """The sub-token states ``(B, S, H)`` of a batch whose sequences exceed one forward pass:
    ``run(ids, mask) -> states`` is called once on all the batch's windows (:func:`plan_windows`:
    ``window_size`` content sub-tokens, ``overlap`` shared, each wrapped in the ``num_prefix`` /
    ``num_suffix`` special tokens), and each sub-token takes its state from its window. Shared by
    :class:`TextEncoder` and the exported text encoders of :mod:`mner.backends`."""
    p, s = num_prefix, num_suffix
    batch_size, seq_len = input_ids.shape
    lengths = attention_mask.sum(1).tolist()
    windows: list[torch.Tensor] = []
    # gather[b, t] = (window index, position in that window) giving sub-token t of item b.
    source_window = torch.zeros((batch_size, seq_len), dtype=torch.long)
    source_pos = torch.zeros((batch_size, seq_len), dtype=torch.long)
    for b in range(batch_size):
        n = int(lengths[b]) - p - s
        ids = input_ids[b]
        prefix, suffix = ids[:p], ids[p + n: p + n + s]
        spans, owner = plan_windows(n, window_size, overlap)
        first = len(windows)
        for a, e in spans:
            windows.append(torch.cat([prefix, ids[p + a: p + e], suffix]))
        source_window[b, :p] = first
        source_pos[b, :p] = torch.arange(p)
        owner_t = torch.tensor(owner, dtype=torch.long)
        window_starts = torch.tensor([a for a, _ in spans], dtype=torch.long)
        source_window[b, p: p + n] = first + owner_t
        source_pos[b, p: p + n] = p + torch.arange(n) - window_starts[owner_t]
        last_len = spans[-1][1] - spans[-1][0]
        source_window[b, p + n: p + n + s] = first + len(spans) - 1
        source_pos[b, p + n: p + n + s] = p + last_len + torch.arange(s)
    width = max(len(w) for w in windows)
    window_ids = input_ids.new_full((len(windows), width), pad_token_id)
    window_mask = attention_mask.new_zeros((len(windows), width))
    for i, w in enumerate(windows):
        window_ids[i, : len(w)] = w
        window_mask[i, : len(w)] = 1
    states = run(window_ids, window_mask)  # (num_windows, width, H)
    flat = (source_window * width + source_pos).to(states.device)
    return states.reshape(-1, states.shape[-1])[flat.reshape(-1)].reshape(batch_size, seq_len, -1)


class TextEncoder(FrozenBackboneMixin, nn.Module):
    """Word features from a pretrained transformer (see the module docstring).

    Args:
        config: what to build; ``TextEncoderConfig()`` is MiniLM, first-sub-token pooling, casing 16.
        model: an already loaded transformer to use instead of loading ``config.name``.
        tokenizer: its fast tokenizer (required with ``model``).
    """

    def __init__(self, config: TextEncoderConfig | None = None, *, model: nn.Module | None = None,
                 tokenizer=None) -> None:
        super().__init__()
        self.config = config = config or TextEncoderConfig()
        if (model is None) != (tokenizer is None):
            raise ValueError("TextEncoder: pass both model and tokenizer, or neither (to load config.name)")
        if model is None:
            from transformers import AutoConfig, AutoModel

            resolved = resolve_text_model(config.name)
            self.tokenizer = WordTokenizer.from_pretrained(resolved)
            if getattr(AutoConfig.from_pretrained(resolved), "model_type", "") == "clip":
                # a full CLIP checkpoint: its text tower (MOUSING reads words in CLIP's space)
                from transformers import CLIPTextModel

                model = CLIPTextModel.from_pretrained(resolved)
            else:
                model = AutoModel.from_pretrained(resolved)
        else:
            self.tokenizer = tokenizer if isinstance(tokenizer, WordTokenizer) else WordTokenizer(tokenizer)
        self.model = model
        self.hidden_size: int = int(model.config.hidden_size)
        self.casing = (nn.Embedding(NUM_CASING_CLASSES, config.casing_dim, padding_idx=int(Casing.PAD))
                       if config.casing_dim else None)
        self.max_length = config.max_length or model_max_length(model.config, self.tokenizer.tokenizer)
        specials = self.tokenizer.num_prefix + self.tokenizer.num_suffix
        self.window_size = self.max_length - specials  #: content sub-tokens per window
        if self.window_size < 1:
            raise ValueError(f"TextEncoder: max_length {self.max_length} leaves no room beside {specials} "
                             "special tokens")
        overlap = config.window_overlap if config.window_overlap is not None else self.window_size // 2
        if overlap >= self.window_size:
            raise ValueError(f"TextEncoder: window_overlap {overlap} must be smaller than the window "
                             f"({self.window_size} content sub-tokens)")
        self.window_overlap = overlap
        self.freeze_backbone()

    # ------------------------------------------------------------------------------------ properties
    @property
    def output_dim(self) -> int:
        """Size of a word vector: ``hidden_size + casing_dim``."""
        return self.hidden_size + self.config.casing_dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------- forward
    def tokenize(self, words: Sequence[Sequence[str]]) -> WordBatch:
        return self.tokenizer(words)

    def encode(self, words: Sequence[Sequence[str]]) -> WordFeatures:
        """Tokenize and encode a batch of word lists."""
        return self(self.tokenize(words))

    def forward(self, batch: WordBatch) -> WordFeatures:
        batch = batch.to(self.device)
        input_ids, attention_mask = batch.input_ids, batch.attention_mask
        if batch.token_states is not None:  # the transformer ran elsewhere (an exported backbone)
            tokens = batch.token_states
        else:
            with torch.set_grad_enabled(self.config.trainable and torch.is_grad_enabled()):
                if input_ids.shape[1] <= self.max_length:
                    tokens = self._run(input_ids, attention_mask)
                else:
                    tokens = self._run_windows(input_ids, attention_mask)
        token_mask = attention_mask.bool()
        tokens = tokens * token_mask[..., None].to(tokens.dtype)
        states = self._pool_words(tokens, batch)
        if self.casing is not None:
            states = torch.cat([states, self.casing(batch.casing).to(states.dtype)], dim=-1)
        states = states * batch.word_mask[..., None].to(states.dtype)
        return WordFeatures(states=states, mask=batch.word_mask, sentence=tokens[:, 0], tokens=tokens)

    def _run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def _run_windows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run a batch with sequences over the limit as overlapping windows and stitch the states."""
        return run_in_windows(self._run, input_ids, attention_mask, num_prefix=self.tokenizer.num_prefix,
                              num_suffix=self.tokenizer.num_suffix, window_size=self.window_size,
                              overlap=self.window_overlap, pad_token_id=self.tokenizer.pad_token_id)

    def _pool_words(self, tokens: torch.Tensor, batch: WordBatch) -> torch.Tensor:
        if self.config.pooling == "first":
            index = batch.word_starts[..., None].expand(-1, -1, tokens.shape[-1])
            return tokens.gather(1, index)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        inside = (positions >= batch.word_starts[..., None]) & (positions < batch.word_ends[..., None])
        weights = inside.to(tokens.dtype) / (batch.word_ends - batch.word_starts).clamp(min=1)[..., None]
        return weights @ tokens
