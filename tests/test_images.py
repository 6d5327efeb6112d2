"""Image store: mode conversion, refused files, and the missing-image policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mner.errors import MNERError
from mner.data import Example
from mner.data.images import ImageError, ImageStore, MissingImagesError, apply_image_policy, to_rgb


@pytest.fixture()
def image_dir(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    return d


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_resolves_ids_with_any_extension_and_direct_paths(image_dir):
    save(Image.new("RGB", (8, 8), (255, 0, 0)), image_dir / "1.jpg")
    save(Image.new("RGB", (8, 8), (0, 255, 0)), image_dir / "2.png")
    store = ImageStore(image_dir)
    assert store.resolve("1") == image_dir / "1.jpg"
    assert store.resolve("2") == image_dir / "2.png"
    assert store.resolve("1.jpg") == image_dir / "1.jpg"
    assert store.resolve(str(image_dir / "2.png")) == image_dir / "2.png"
    assert store.resolve("3") is None
    assert store.open("2").getpixel((0, 0)) == (0, 255, 0)


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda: Image.new("L", (4, 4), 128), (128, 128, 128)),
        (lambda: Image.new("1", (4, 4), 1), (255, 255, 255)),
        (lambda: Image.new("RGBA", (4, 4), (255, 0, 0, 0)), (255, 255, 255)),  # transparent -> white
        (lambda: Image.new("RGBA", (4, 4), (255, 0, 0, 255)), (255, 0, 0)),
        (lambda: Image.new("LA", (4, 4), (0, 255)), (0, 0, 0)),
        (lambda: Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
        (lambda: Image.fromarray(np.full((4, 4), 65535, np.uint16)), (255, 255, 255)),  # 16-bit grey
        (lambda: Image.fromarray(np.full((4, 4), 0.5, np.float32)), (128, 128, 128)),
        (lambda: Image.new("I", (4, 4), 1000), (4, 4, 4)),  # 32-bit int grey holding 16-bit data
        (lambda: Image.new("YCbCr", (4, 4), (255, 128, 128)), (255, 255, 255)),
    ],
)
def test_to_rgb_every_mode(make, expect):
    out = to_rgb(make())
    assert out.mode == "RGB"
    assert all(abs(a - b) <= 1 for a, b in zip(out.getpixel((1, 1)), expect))


def test_palette_images_with_and_without_transparency(image_dir):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    assert to_rgb(p).getpixel((0, 0)) == (10, 20, 30)
    save(p, image_dir / "t.png", transparency=0)
    assert ImageStore(image_dir).open("t").getpixel((0, 0)) == (255, 255, 255)


def test_16bit_png_and_cmyk_jpeg_from_disk(image_dir):
    save(Image.fromarray(np.full((5, 5), 32896, np.uint16)), image_dir / "g16.png")
    save(Image.new("CMYK", (5, 5), (0, 255, 255, 0)), image_dir / "c.jpg")
    store = ImageStore(image_dir)
    assert store.open("g16").getpixel((2, 2)) == (128, 128, 128)
    r, g, b = store.open("c").getpixel((2, 2))
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied(image_dir):
    img = Image.new("RGB", (20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    save(img, image_dir / "r.jpg", exif=exif)
    assert ImageStore(image_dir).open("r").size == (10, 20)


def test_refused_files_name_id_and_path(image_dir):
    (image_dir / "empty.jpg").write_bytes(b"")
    (image_dir / "junk.jpg").write_bytes(b"this is not an image at all" * 10)
    save(Image.new("RGB", (64, 64), (1, 2, 3)), image_dir / "full.jpg", quality=95)
    data = (image_dir / "full.jpg").read_bytes()
    (image_dir / "cut.jpg").write_bytes(data[: len(data) // 2])
    save(Image.new("1", (3000, 3000)), image_dir / "bomb.png")
    store = ImageStore(image_dir, max_pixels=1_000_000)
    cases = {"empty": "empty", "junk": "corrupt", "cut": "truncated", "bomb": "too-large", "nope": "missing"}
    for ref, kind in cases.items():
        with pytest.raises(ImageError) as info:
            store.open(ref, image_id=f"tweet-{ref}")
        assert info.value.kind == kind, ref
        assert f"tweet-{ref}" in str(info.value) and str(image_dir) in str(info.value)
    # the default limit lets a 9-megapixel image through
    assert ImageStore(image_dir).open("bomb").size == (3000, 3000)


def test_pil_own_bomb_guard_is_reported(image_dir, monkeypatch):
    save(Image.new("1", (2000, 2000)), image_dir / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # PIL raises above 2x this
    with pytest.raises(ImageError) as info:
        ImageStore(image_dir, max_pixels=10**9).open("big")
    assert info.value.kind == "too-large"


def make_examples(image_dir):
    save(Image.new("RGB", (8, 8)), image_dir / "a.jpg")
    (image_dir / "b.jpg").write_bytes(b"")
    return [
        Example("a", ["x"], ["O"], image="a"),
        Example("b", ["x"], ["O"], image="b"),  # unreadable
        Example("c", ["x"], ["O"], image="c"),  # missing
        Example("d", ["x"], ["O"], image=None),  # no image at all
    ]


def test_policy_error_lists_the_tweets(image_dir):
    exs = make_examples(image_dir)
    with pytest.raises(MissingImagesError) as info:
        apply_image_policy(exs, ImageStore(image_dir))
    msg = str(info.value)
    assert "2 tweets" in msg and "'b'" in msg and "'c'" in msg and "--missing-images" in msg


def test_policy_blank_and_drop_are_counted(image_dir):
    exs = make_examples(image_dir)
    kept, rep = apply_image_policy(exs, ImageStore(image_dir), "blank")
    assert [e.image for e in kept] == ["a", None, None, None]
    assert rep.found == 1 and rep.missing == ["c"] and list(rep.unreadable) == ["b"] and rep.no_image == 1
    assert "2 tweets kept without image" in rep.summary()
    kept, rep = apply_image_policy(exs, ImageStore(image_dir), "drop")
    assert [e.id for e in kept] == ["a", "d"] and rep.affected == 2 and "dropped" in rep.summary()
    with pytest.raises(MNERError, match="policy"):
        apply_image_policy(exs, ImageStore(image_dir), "ignore")


@pytest.mark.parametrize("policy", ["blank", "drop"])
def test_policy_hits_only_the_bad_tweet_when_ids_repeat(image_dir, policy):
    save(Image.new("RGB", (8, 8)), image_dir / "good.jpg")
    exs = [
        Example("7", ["x"], ["O"], image="good"),
        Example("7", ["y"], ["O"], image="gone"),  # same tweet id, missing image
        Example("8", ["z"], ["O"], image="good"),
    ]
    kept, rep = apply_image_policy(exs, ImageStore(image_dir), policy)
    if policy == "blank":
        assert [e.image for e in kept] == ["good", None, "good"]
    else:
        assert [e.tokens for e in kept] == [("x",), ("z",)]
    assert rep.missing == ["7"] and rep.found == 2 and rep.action.startswith("1 tweets")
