"""Image encoder backbones, PIL transforms, and the caption view."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import random
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mner.errors import MNERError
from mner.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CaptionEncoder,
    CaptionEncoderConfig,
    EvalTransform,
    ImageEncoder,
    ImageEncoderConfig,
    TrainTransform,
    VisualFeatures,
    caption_key,
)
from tiny_models import make_tiny_bert, make_tiny_clip, make_tiny_resnet, make_tiny_vit, write_preprocessor_config


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    return {
        "resnet": make_tiny_resnet(root / "resnet"),
        "vit": make_tiny_vit(root / "vit", image_size=32, patch_size=8),
        "clip": make_tiny_clip(root / "clip", image_size=32, patch_size=8),
        "bert": make_tiny_bert(root / "bert", max_position_embeddings=32),
    }


def _image(width=50, height=40, seed=0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


# ------------------------------------------------------------------------------------- backbones
def _check(encoder: ImageEncoder, regions: int, dim: int) -> VisualFeatures:
    x = torch.randn(2, 3, encoder.image_size, encoder.image_size, generator=torch.Generator().manual_seed(0))
    out = encoder(x)
    assert encoder.num_regions == regions and encoder.output_dim == dim
    assert out.tokens.shape == (2, regions, dim) and out.pooled.shape == (2, dim)
    assert out.mask.dtype == torch.bool and out.mask.shape == (2, regions) and out.mask.all()
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    return out


def test_efficientnet_lite0_random():
    encoder = ImageEncoder(ImageEncoderConfig(pretrained=False, image_size=64))
    assert encoder.kind == "efficientnet" and encoder.grid == (2, 2)
    out = _check(encoder, 4, 1280)
    # randomly initialised EfficientNet features are tiny (~1e-9): an absolute tolerance would
    # accept anything, so the comparison is relative only
    assert out.tokens.abs().max() > 0
    torch.testing.assert_close(out.pooled, out.tokens.mean(1), rtol=1e-5, atol=0)


def test_resnet(folders):
    encoder = ImageEncoder(ImageEncoderConfig(name=str(folders["resnet"]), image_size=64))
    assert encoder.kind == "resnet"
    out = _check(encoder, 8 * 8, 16)  # 2 stages: stride 4 then 2
    torch.testing.assert_close(out.pooled, out.tokens.mean(1), atol=1e-5, rtol=1e-5)


def test_vit(folders):
    encoder = ImageEncoder(ImageEncoderConfig(name=str(folders["vit"])))
    assert encoder.kind == "vit" and encoder.image_size == 32
    out = _check(encoder, 16, 32)
    with torch.no_grad():
        hidden = encoder.backbone(pixel_values=torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(out.pooled, hidden.last_hidden_state[:, 0])


def test_clip_vision_tower_from_full_clip_checkpoint(folders):
    from transformers import CLIPModel

    encoder = ImageEncoder(ImageEncoderConfig(name=str(folders["clip"])))
    assert encoder.kind == "clip"
    out = _check(encoder, 16, 32)
    full = CLIPModel.from_pretrained(str(folders["clip"]))
    ours = {name.removeprefix("vision_model."): p for name, p in encoder.backbone.named_parameters()}
    theirs = dict(full.vision_model.named_parameters())
    assert ours.keys() == theirs.keys()
    for name, param in theirs.items():  # the weights were loaded, not re-drawn
        assert torch.equal(ours[name], param), name
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out.pooled, full.vision_model(pixel_values=x).pooler_output)


def test_clip_random_init_differs(folders):
    loaded = ImageEncoder(ImageEncoderConfig(name=str(folders["clip"])))
    random_ = ImageEncoder(ImageEncoderConfig(name=str(folders["clip"]), pretrained=False))
    assert loaded.fingerprint != random_.fingerprint
    _check(random_, 16, 32)


def test_preprocessing_read_from_preprocessor_config(folders, tmp_path):
    folder = shutil.copytree(folders["vit"], tmp_path / "vit")
    write_preprocessor_config(folder, image_size=32, shortest_edge=40, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    encoder = ImageEncoder(ImageEncoderConfig(name=str(folder)))
    transform = encoder.eval_transform()
    assert transform.mean == (0.5, 0.5, 0.5) and transform.std == (0.25, 0.25, 0.25)
    assert transform.image_size == 32 and transform.resize_to == 40
    plain = ImageEncoder(ImageEncoderConfig(name=str(folders["vit"]))).eval_transform()
    assert plain.mean == IMAGENET_MEAN and plain.std == IMAGENET_STD
    assert transform.signature != plain.signature
    assert encoder.train_transform().mean == (0.5, 0.5, 0.5)


def test_only_the_offline_image_alias_loads_pretrained_efficientnet():
    from mner.encoders.offline import IMAGE_ALIASES

    assert IMAGE_ALIASES == ("efficientnet-lite0",)
    with pytest.raises(MNERError, match="no offline weights for 'efficientnet-lite1'"):
        ImageEncoder(ImageEncoderConfig(name="efficientnet-lite1"))


def test_unsupported_model_and_wrong_size(folders):
    with pytest.raises(MNERError, match="supports"):
        ImageEncoder(ImageEncoderConfig(name=str(folders["bert"])))
    encoder = ImageEncoder(ImageEncoderConfig(pretrained=False, image_size=64))
    with pytest.raises(ValueError, match="64x64"):
        encoder(torch.zeros(1, 3, 32, 32))


def test_frozen_encoder_has_no_gradient_and_stays_in_eval():
    encoder = ImageEncoder(ImageEncoderConfig(pretrained=False, image_size=64))
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.backbone.training
    bn = encoder.backbone._bn0
    before = bn.running_mean.clone()
    out = encoder(torch.randn(2, 3, 64, 64))
    assert not out.tokens.requires_grad and not out.pooled.requires_grad
    assert torch.equal(bn.running_mean, before)  # batch-norm statistics never move


def test_trainable_encoder_gets_gradients(folders):
    encoder = ImageEncoder(ImageEncoderConfig(name=str(folders["vit"]), trainable=True))
    encoder(torch.randn(2, 3, 32, 32)).pooled.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def test_fingerprint_follows_the_weights(folders):
    a = ImageEncoder(ImageEncoderConfig(name=str(folders["vit"])))
    b = ImageEncoder(ImageEncoderConfig(name=str(folders["vit"])))
    first = a.fingerprint
    assert first == b.fingerprint and str(folders["vit"]) in first
    with torch.no_grad():
        next(a.parameters()).add_(1e-3)
    assert a.fingerprint != first
    a.load_state_dict(b.state_dict())
    assert a.fingerprint == first


# ------------------------------------------------------------------------ fused inference
def _random_batch_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Statistics and affine terms far from a fresh batch norm's (0, 1, 1, 0): folding them is then
    a real change of the convolution weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _fusable(kind: str, folders) -> ImageEncoder:
    cfg = (ImageEncoderConfig(pretrained=False, image_size=64) if kind == "efficientnet"
           else ImageEncoderConfig(name=str(folders["resnet"]), image_size=64))
    encoder = ImageEncoder(cfg).eval()
    _random_batch_norms(encoder.backbone)
    return encoder


@pytest.mark.parametrize("kind", ["efficientnet", "resnet"])
def test_fused_inference_gives_the_plain_backbones_features(kind, folders):
    encoder = _fusable(kind, folders)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    plain_fingerprint = encoder.fingerprint
    with torch.no_grad():
        plain = encoder(x)
        encoder.fuse_for_inference()
        fused = encoder(x)
    copy_ = encoder._fused[1]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy_.modules())  # every norm folded
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.backbone.modules()) > 0
    scale = plain.tokens.abs().max()
    assert not torch.equal(fused.tokens, plain.tokens)  # the other path really ran
    torch.testing.assert_close(fused.tokens, plain.tokens, rtol=1e-4, atol=1e-4 * float(scale))
    torch.testing.assert_close(fused.pooled, plain.pooled, rtol=1e-4, atol=1e-4 * float(scale))
    assert fused.tokens.is_contiguous() and fused.pooled.is_contiguous()
    # checkpoints keep the plain weights; the cache never mixes the two paths' features
    after = encoder.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())
    assert encoder.fingerprint == plain_fingerprint + ":fused"


def test_fused_inference_only_in_eval_without_gradients(folders):
    encoder = _fusable("efficientnet", folders).fuse_for_inference()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    encoder.fuse_for_inference(False)
    with torch.no_grad():
        plain = encoder(x).tokens
    encoder.fuse_for_inference(True)
    assert torch.equal(encoder(x).tokens, plain)  # gradients on: the plain backbone
    encoder.train()
    with torch.no_grad():
        assert torch.equal(encoder(x).tokens, plain)  # training mode: the plain backbone
    assert not encoder.fingerprint.endswith(":fused")
    trainable = ImageEncoder(ImageEncoderConfig(pretrained=False, image_size=64, trainable=True)).eval()
    trainable.fuse_for_inference()
    with torch.no_grad():
        trainable(x)
    assert trainable._fused is None and not trainable.fingerprint.endswith(":fused")


def test_fused_copy_follows_new_weights(folders):
    a = _fusable("efficientnet", folders).fuse_for_inference()
    b = _fusable("efficientnet", folders)
    _random_batch_norms(b.backbone, seed=5)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = a(x).tokens
        a.load_state_dict(b.state_dict())  # in-place copies: the folded copy must be rebuilt
        after = a(x).tokens
        expected = b(x).tokens
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.slow
def test_efficientnet_lite0_pretrained():
    encoder = ImageEncoder()
    assert encoder.image_size == 224 and encoder.num_regions == 49
    pixels = encoder.eval_transform()(_image(300, 200))
    _check(encoder, 49, 1280)
    real = encoder(pixels[None])
    assert real.tokens.shape == (1, 49, 1280) and torch.isfinite(real.tokens).all()
    # the pretrained weights are loaded: features of a real scale (a random network gives ~1e-9)
    # and far from those of the same architecture randomly initialised
    fake = ImageEncoder(ImageEncoderConfig(pretrained=False))(pixels[None])
    assert real.tokens.abs().max() > 1.0 and real.tokens.abs().mean() > 1e-2
    assert real.tokens.abs().mean() > 1e3 * fake.tokens.abs().mean()
    assert not torch.allclose(real.tokens, fake.tokens)


# ------------------------------------------------------------------------------------ transforms
def test_eval_transform_is_deterministic_and_normalises():
    transform = EvalTransform(image_size=32)
    image = _image()
    a, b = transform(image), transform(image)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    flat = Image.new("RGB", (64, 48), (255, 0, 128))
    out = transform(flat)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 5, 7], expected)
    assert transform.resize_to == 37 and "size=32" in transform.signature


def test_eval_transform_center_crops():
    image = Image.new("RGB", (60, 30), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 15, 30))  # a white band at the left edge, cropped away
    out = EvalTransform(image_size=30, resize=30, mean=(0, 0, 0), std=(1, 1, 1))(image)
    assert out.shape == (3, 30, 30) and out.max() < 0.05


def test_train_transform_reproducible_and_uses_no_global_rng():
    transform = TrainTransform(image_size=24)
    image = _image(64, 48)
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    a = transform(image, random.Random(1))
    b = transform(image, random.Random(1))
    c = transform(image, random.Random(2))
    g1 = transform(image, torch.Generator().manual_seed(5))
    g2 = transform(image, torch.Generator().manual_seed(5))
    assert a.shape == (3, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(g1, g2)
    assert random.getstate() == py_state and torch.equal(torch.get_rng_state(), torch_state)
    outputs = {transform(image, random.Random(seed)).sum().item() for seed in range(8)}
    assert len(outputs) == 8
    with pytest.raises(TypeError, match="rng"):
        transform(image, None)
    assert transform.signature.startswith("train:") and not transform.deterministic


def test_transforms_want_rgb():
    with pytest.raises(ValueError, match="RGB"):
        EvalTransform(image_size=8)(Image.new("L", (10, 10)))


# ---------------------------------------------------------------------------------- caption view
@pytest.fixture(scope="module")
def captioner(folders):
    return CaptionEncoder(CaptionEncoderConfig(name=str(folders["bert"])))


def test_caption_view_shapes_and_empty_caption(captioner):
    captions = ["two people holding hands at a wedding", "", None, "a cat"]
    out = captioner.encode(captions)
    assert isinstance(out, VisualFeatures) and captioner.output_dim == 32
    assert out.tokens.shape[0] == 4 and out.tokens.shape[2] == 32 and out.pooled.shape == (4, 32)
    lengths = out.mask.sum(1).tolist()
    assert lengths[1] == lengths[2] == 2  # [CLS] [SEP]
    assert lengths[0] == out.tokens.shape[1] and lengths[3] == 4
    assert torch.isfinite(out.pooled).all() and (out.tokens[~out.mask] == 0).all()
    torch.testing.assert_close(out.pooled[3], out.tokens[3, :4].mean(0))
    assert not out.tokens.requires_grad


def test_caption_first_pooling_and_fingerprint(folders, captioner):
    first = CaptionEncoder(CaptionEncoderConfig(name=str(folders["bert"]), pooling="first"))
    out = first.encode(["a cat", ""])
    torch.testing.assert_close(out.pooled, out.tokens[:, 0])
    assert first.fingerprint != captioner.fingerprint
    # stable across processes (a persistent cache key): SHA-256 of the UTF-8 text, pinned here
    # as computed by `sha256sum`
    assert caption_key("a cat") == "caption-sha256:51e467415607798220a3776f6ae1a2a0" != caption_key("a dog")
    assert caption_key(None) == caption_key("") == "caption-sha256:e3b0c44298fc1c149afbf4c8996fb924"


def test_caption_longer_than_limit_is_truncated_with_warning(folders, caplog):
    encoder = CaptionEncoder(CaptionEncoderConfig(name=str(folders["bert"]), max_length=6))
    with caplog.at_level("WARNING"):
        out = encoder.encode(["the cat in the city of london", "a cat"])
    assert out.tokens.shape[1] == 6 and "truncated" in caplog.text


class _CountingTokenizer:
    """A tokenizer wrapper that records the keyword arguments of each call."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.calls: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self._tokenizer(*args, **kwargs)


def test_caption_batch_within_the_limit_is_tokenized_once(captioner, monkeypatch):
    captions = ["two people holding hands at a wedding", "", None, "a cat"]
    counting = _CountingTokenizer(captioner.tokenizer)
    monkeypatch.setattr(captioner, "tokenizer", counting)
    got = captioner.tokenize(captions)
    assert len(counting.calls) == 1
    want = counting._tokenizer([c or "" for c in captions], padding=True, return_tensors="pt")
    assert set(got) == {"input_ids", "attention_mask"}
    for key in got:
        assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key])


def test_caption_batch_over_the_limit_is_truncated(folders, monkeypatch):
    encoder = CaptionEncoder(CaptionEncoderConfig(name=str(folders["bert"]), max_length=6))
    counting = _CountingTokenizer(encoder.tokenizer)
    monkeypatch.setattr(encoder, "tokenizer", counting)
    captions = ["the cat in the city of london", "a cat"]
    got = encoder.tokenize(captions)
    want = counting._tokenizer(captions, padding=True, truncation=True, max_length=6, return_tensors="pt")
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(got[key], want[key])
    assert got["input_ids"].shape == (2, 6)


def test_frozen_caption_encoder_stays_in_eval(captioner):
    assert not any(p.requires_grad for p in captioner.model.parameters())
    assert captioner.train() is captioner
    assert captioner.training and not captioner.model.training
    captioner.eval()


def test_trainable_caption_encoder_trains(folders):
    encoder = CaptionEncoder(CaptionEncoderConfig(name=str(folders["bert"]), trainable=True))
    assert all(p.requires_grad for p in encoder.model.parameters())
    encoder.train()
    assert encoder.model.training
    encoder.eval()
    assert not encoder.model.training
