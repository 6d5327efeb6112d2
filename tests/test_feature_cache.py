"""Feature cache: hits and misses, float16 round trip, on-disk reuse, keys, refusals."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import random

import pytest
import torch

from mner.encoders import (
    CaptionEncoder,
    CaptionEncoderConfig,
    EvalTransform,
    FeatureCache,
    ImageEncoder,
    ImageEncoderConfig,
    TrainTransform,
    caption_key,
    encode_with_cache,
)
from tiny_models import make_tiny_bert, make_tiny_vit


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return make_tiny_vit(tmp_path_factory.mktemp("vit"), image_size=32, patch_size=8)


@pytest.fixture(scope="module")
def encoder(vit_dir):
    return ImageEncoder(ImageEncoderConfig(name=str(vit_dir)))


class Loader:
    """Deterministic fake images per id; records which ids were loaded."""

    def __init__(self, size=32):
        self.size = size
        self.calls: list[list[str]] = []

    def __call__(self, ids):
        self.calls.append(list(ids))
        return torch.stack([torch.randn(3, self.size, self.size, generator=torch.Generator().manual_seed(int(i)))
                            for i in ids])

    @property
    def loaded(self):
        return [i for call in self.calls for i in call]


SIGNATURE = EvalTransform(image_size=32)
IDS = ["11", "12", "13", "14", "15"]


def test_second_pass_only_hits_and_identical(encoder):
    cache, loader = FeatureCache(), Loader()
    first = encode_with_cache(encoder, IDS, loader, cache, signature=SIGNATURE, batch_size=2)
    assert cache.stats()["misses"] == 5 and cache.hits == 0
    assert [len(c) for c in loader.calls] == [2, 2, 1] and loader.loaded == IDS
    second = encode_with_cache(encoder, IDS[::-1], loader, cache, signature=SIGNATURE)
    assert cache.hits == 5 and cache.misses == 5 and len(loader.calls) == 3
    assert torch.equal(second.tokens, first.tokens.flip(0)) and torch.equal(second.pooled, first.pooled.flip(0))
    with torch.no_grad():
        direct = encoder(loader(IDS))
    torch.testing.assert_close(first.tokens, direct.tokens, atol=2e-3, rtol=2e-3)  # float16 storage
    torch.testing.assert_close(first.pooled, direct.pooled, atol=2e-3, rtol=2e-3)
    assert first.tokens.dtype == torch.float32 and first.mask.all() and first.tokens.shape == (5, 16, 32)


def test_float32_storage_is_exact(encoder):
    cache, loader = FeatureCache(dtype=torch.float32), Loader()
    out = encode_with_cache(encoder, IDS[:2], loader, cache, signature=SIGNATURE)
    with torch.no_grad():
        direct = encoder(loader(IDS[:2]))
    assert torch.equal(out.tokens, direct.tokens) and torch.equal(out.pooled, direct.pooled)


def test_duplicates_are_computed_once(encoder):
    cache, loader = FeatureCache(), Loader()
    out = encode_with_cache(encoder, ["11", "12", "11"], loader, cache, signature=SIGNATURE)
    assert loader.loaded == ["11", "12"] and torch.equal(out.tokens[0], out.tokens[2])


def test_on_disk_reuse_across_cache_objects(encoder, tmp_path):
    loader = Loader()
    first = encode_with_cache(encoder, IDS, loader, FeatureCache(tmp_path), signature=SIGNATURE)
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert len(files) == 5 and not list(tmp_path.rglob("*.tmp"))
    other = FeatureCache(tmp_path)  # e.g. a second process or run
    again = encode_with_cache(encoder, IDS, Loader(), other, signature=SIGNATURE)
    assert other.hits == 5 and other.misses == 0 and other.disk_hits == 5
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.pooled, again.pooled)
    assert not any(p.read_bytes().startswith(b"\x80") for p in files)  # safetensors, not pickle


def test_unreadable_file_is_recomputed(encoder, tmp_path):
    encode_with_cache(encoder, ["11"], Loader(), FeatureCache(tmp_path), signature=SIGNATURE)
    (path,) = tmp_path.rglob("*.safetensors")
    path.write_bytes(b"garbage")
    cache, loader = FeatureCache(tmp_path), Loader()
    encode_with_cache(encoder, ["11"], loader, cache, signature=SIGNATURE)
    assert loader.loaded == ["11"] and cache.misses == 1


def test_keys_differ_with_transform_and_weights(vit_dir):
    fp = "image:x:sha256=1"
    assert FeatureCache.make_key(fp, "11", "a") != FeatureCache.make_key(fp, "11", "b")
    assert FeatureCache.make_key(fp, "11", "a") != FeatureCache.make_key(fp, "12", "a")
    # stable across processes and versions (a persistent cache): the SHA-256 of
    # "fingerprint \x1f item \x1f signature", pinned here as computed by `sha256sum`
    assert FeatureCache.make_key(fp, "11", "a") == "0344cda38ec29e9be320e0eabf1d5eed32f9d14b3868090f974fa59e399f8164"
    mine = ImageEncoder(ImageEncoderConfig(name=str(vit_dir)))
    cache, loader = FeatureCache(), Loader()
    encode_with_cache(mine, IDS, loader, cache, signature=SIGNATURE)
    encode_with_cache(mine, IDS, loader, cache, signature=EvalTransform(image_size=32, resize=32))
    assert cache.misses == 10 and cache.hits == 0
    with torch.no_grad():
        next(mine.parameters()).mul_(1.5)
    before = len(loader.loaded)
    encode_with_cache(mine, IDS, loader, cache, signature=SIGNATURE)
    assert cache.misses == 15 and len(loader.loaded) == before + 5


def test_trainable_encoder_and_random_transform_refused(vit_dir, encoder):
    trainable = ImageEncoder(ImageEncoderConfig(name=str(vit_dir), trainable=True))
    with pytest.raises(ValueError, match="trainable"):
        encode_with_cache(trainable, IDS, Loader(), FeatureCache())
    with pytest.raises(ValueError, match="random transform"):
        encode_with_cache(encoder, IDS, Loader(), FeatureCache(), signature=TrainTransform(image_size=32))


def test_memory_limit_keeps_disk_entries(encoder, tmp_path):
    cache = FeatureCache(tmp_path, max_in_memory=2)
    encode_with_cache(encoder, IDS, Loader(), cache, signature=SIGNATURE)
    assert len(cache) == 2
    loader = Loader()
    encode_with_cache(encoder, IDS[::-1], loader, cache, signature=SIGNATURE)  # the last two are in memory
    assert loader.calls == [] and cache.disk_hits == 3 and cache.hits == 5


def test_caption_features_padded_with_mask(tmp_path_factory):
    folder = make_tiny_bert(tmp_path_factory.mktemp("bert"), max_position_embeddings=32)
    captioner = CaptionEncoder(CaptionEncoderConfig(name=str(folder)))
    texts = {caption_key(t): t for t in ["a cat", "", "two people holding hands at a wedding"]}
    keys = list(texts)
    cache = FeatureCache()
    out = encode_with_cache(captioner, keys, lambda ks: [texts[k] for k in ks], cache)
    direct = captioner.encode(list(texts.values()))
    assert out.tokens.shape == direct.tokens.shape and torch.equal(out.mask, direct.mask)
    torch.testing.assert_close(out.tokens, direct.tokens, atol=2e-3, rtol=2e-3)
    # one at a time: each item stored without padding, padded again to the batch's longest
    single = encode_with_cache(captioner, keys[1:2], lambda ks: pytest.fail("recomputed"), cache)
    assert single.tokens.shape[1] == 2 and single.mask.all()
    random.Random(0).shuffle(keys)
    shuffled = encode_with_cache(captioner, keys, lambda ks: pytest.fail("recomputed"), cache)
    assert shuffled.mask.sum(1).tolist() == [direct.mask[list(texts).index(k)].sum().item() for k in keys]
