"""Tiny random models and tokenizers, saved to a folder, for fast offline tests.

Every builder writes a folder that ``from_pretrained(folder)`` loads (``AutoTokenizer``,
``AutoModel``, ``ResNetModel``, ``ViTModel``, ``CLIPVisionModel`` ...) and returns its path.
The models are randomly initialised from a seeded generator, so two calls with the same
arguments give the same weights. Nothing here touches the network.

Typical use in a test module::

    @pytest.fixture(scope="module")
    def bert_dir(tmp_path_factory):
        return make_tiny_bert(tmp_path_factory.mktemp("bert"), max_position_embeddings=16)
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Iterable

import torch

__all__ = [
    "SPECIAL_TOKENS",
    "tiny_vocab",
    "make_tiny_tokenizer",
    "make_tiny_bert",
    "make_tiny_resnet",
    "make_tiny_vit",
    "make_tiny_clip",
    "write_preprocessor_config",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# A few whole words so that common test sentences are not all single characters.
_WORDS = (
    "the", "a", "an", "of", "in", "at", "on", "and", "to", "is", "rt", "user", "http",
    "new", "york", "obama", "trump", "paris", "london", "apple", "google", "wedding",
    "people", "holding", "hands", "two", "man", "woman", "dog", "cat", "photo", "city",
)


def tiny_vocab(lowercase: bool = True, extra_words: Iterable[str] = ()) -> list[str]:
    """A WordPiece vocabulary that covers every ASCII word: special tokens, each printable
    character alone and as a ``##`` continuation, and a few whole words.

    Characters outside ASCII (accents, emoji) are not in it: a word holding one becomes ``[UNK]``.
    """
    letters = string.ascii_lowercase if lowercase else string.ascii_letters
    chars = letters + string.digits + string.punctuation
    vocab = list(SPECIAL_TOKENS)
    vocab += list(chars)
    vocab += ["##" + c for c in chars]
    words = list(_WORDS) + list(extra_words)
    if not lowercase:
        words += [w.capitalize() for w in _WORDS]
    for w in words:
        if w not in vocab:
            vocab.append(w)
    return vocab


def make_tiny_tokenizer(path: str | Path, *, lowercase: bool = True, model_max_length: int | None = None,
                        extra_words: Iterable[str] = ()):
    """Build a fast BERT WordPiece tokenizer with the ``tokenizers`` library and save it to ``path``.

    Returns the tokenizer (a ``BertTokenizerFast``); ``AutoTokenizer.from_pretrained(path)`` reloads it.
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    vocab = tiny_vocab(lowercase, extra_words)
    ids = {tok: i for i, tok in enumerate(vocab)}
    backend = Tokenizer(WordPiece(ids, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    tokenizer = BertTokenizerFast(
        tokenizer_object=backend,
        do_lower_case=lowercase,
        strip_accents=lowercase,
        unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
        **kwargs,
    )
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    return tokenizer


def make_tiny_bert(path: str | Path, *, lowercase: bool = True, max_position_embeddings: int = 64,
                   hidden_size: int = 32, num_hidden_layers: int = 2, num_attention_heads: int = 2,
                   model_max_length: int | None = None, seed: int = 0) -> Path:
    """A 2-layer, hidden-32 random BERT and its tiny WordPiece tokenizer, saved to ``path``."""
    from transformers import BertConfig, BertModel

    path = Path(path)
    tokenizer = make_tiny_tokenizer(path, lowercase=lowercase, model_max_length=model_max_length)
    config = BertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=2 * hidden_size + 5,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(str(path))
    return path


def write_preprocessor_config(path: str | Path, *, image_size: int, mean: Iterable[float],
                              std: Iterable[float], shortest_edge: int | None = None) -> Path:
    """Write a ``preprocessor_config.json`` (CLIP-like keys) into a model folder."""
    path = Path(path)
    cfg = {
        "crop_size": {"height": image_size, "width": image_size},
        "size": {"shortest_edge": shortest_edge or image_size},
        "do_center_crop": True,
        "do_normalize": True,
        "image_mean": list(mean),
        "image_std": list(std),
    }
    (path / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2))
    return path


def make_tiny_resnet(path: str | Path, *, hidden_sizes=(8, 16), depths=(1, 1), seed: int = 0) -> Path:
    """A random 2-stage basic-block ResNet (``ResNetModel``), saved to ``path``.

    Its grid is ``image_size / 32`` on a side when there are 4 stages, ``/ 8`` with the default 2.
    """
    from transformers import ResNetConfig, ResNetModel

    config = ResNetConfig(embedding_size=8, hidden_sizes=list(hidden_sizes), depths=list(depths),
                          layer_type="basic")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNetModel(config)
    path = Path(path)
    model.save_pretrained(str(path))
    return path


def make_tiny_vit(path: str | Path, *, image_size: int = 32, patch_size: int = 8, hidden_size: int = 32,
                  seed: int = 0) -> Path:
    """A random 2-layer ViT (``ViTModel``), saved to ``path``: ``(image_size / patch_size)**2`` patches."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=2 * hidden_size + 5, image_size=image_size, patch_size=patch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(config, add_pooling_layer=False)
    path = Path(path)
    model.save_pretrained(str(path))
    return path


def make_tiny_clip(path: str | Path, *, image_size: int = 32, patch_size: int = 8, hidden_size: int = 32,
                   seed: int = 0) -> Path:
    """A random tiny *full* ``CLIPModel`` (text and vision towers), saved to ``path``,
    as a CLIP hub checkpoint is: encoders must load the vision tower out of it."""
    from transformers import CLIPConfig, CLIPModel

    tower = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size + 5, num_hidden_layers=2,
                 num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=99, max_position_embeddings=16, bos_token_id=0, eos_token_id=2,
                         pad_token_id=1),
        vision_config=dict(tower, image_size=image_size, patch_size=patch_size),
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    path = Path(path)
    model.save_pretrained(str(path))
    return path
