"""The quickstart's demo corpus: tweets whose entities can only be typed by looking at the image.

Built at run time, deterministically (a seed), from real photographs that ship inside installed
packages, so nothing is downloaded:

* people (PER): ``astronaut`` and ``camera`` from scikit-image's data folder, and the 100 face
  photos of scikit-image's ``lfw_subset`` (Labeled Faces in the Wild, 25x25 grey);
* places (LOC): ``china.jpg`` (a pagoda, scikit-learn's sample images), ``rocket`` (a launch pad at
  night) and ``moon`` (scikit-image);
* animals and things (MISC): ``chelsea`` (a cat), ``horse``, ``coffee``, ``motorcycle_left``
  (scikit-image) and ``flower.jpg`` (scikit-learn).

Each tweet is a template with one name slot, e.g. ``"{N} after a fish dinner"`` (the example of
the MAF paper: Rob is a person, or a cat named Rob). The name is a made-up one-word name; its
type is the type of the photo attached to the tweet, so the same sentence with a different image
has a different type, and the text alone cannot tell. Some templates also hold an entity the
text does decide (``London`` is LOC, ``Google`` ORG), so a text-only tagger is not at zero.

Splits: names of the test split are never seen in training; the faces of the test split are
other people than those of training; for the other photos, every tweet gets its own random crop
(scale 0.45-1, flip, brightness jitter), so a test image is an unseen crop of a photo seen in
training. Captions (one hand-written sentence per photo) are written too, so the caption and both
views can be tried on the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from mner.data.example import Example
from mner.data.formats import write_twitter

__all__ = ["DEMO_VERSION", "build_demo_corpus", "demo_photos", "TEMPLATES"]

DEMO_VERSION = "1"

TEMPLATES = [
    ("{N} after a fish dinner", {}),
    ("Look who showed up today : {N}", {}),
    ("Can't stop thinking about {N}", {}),
    ("{N} looks amazing this morning", {}),
    ("Spent the whole afternoon with {N}", {}),
    ("Nothing beats {N} on a Sunday", {}),
    ("Say hello to {N} !", {}),
    ("{N} is all over London tonight", {"London": "LOC"}),
    ("Our trip to see {N} was worth it", {}),
    ("Google just shared a picture of {N}", {"Google": "ORG"}),
    ("Throwback to {N} last summer", {}),
    ("{N} , seriously the best", {}),
]
TRAIN_NAMES = ["Rob", "Kai", "Milo", "Luna", "Max", "Skye", "Orion", "Sierra", "Dakota", "Aurora",
               "Jasper", "Willow", "Bruno", "Coco", "Leo", "Ziggy", "Nala", "Otis"]
TEST_NAMES = ["Jordan", "Phoenix", "Rio", "Sunny", "Ash", "Remy", "Indy", "Nova", "Tex", "Juno"]

_PHOTOS = {
    "PER": [("skimage", "astronaut.png", "a woman in an orange space suit"),
            ("skimage", "camera.png", "a man taking pictures with a camera")],
    "LOC": [("sklearn", "china.jpg", "a tall pagoda next to a lake"),
            ("skimage", "rocket.jpg", "a rocket on a launch pad at night"),
            ("skimage", "moon.png", "the grey surface of the moon")],
    "MISC": [("skimage", "chelsea.png", "a tabby cat looking at the camera"),
             ("skimage", "horse.png", "a black silhouette of a horse"),
             ("skimage", "coffee.png", "a cup of coffee on a saucer"),
             ("skimage", "motorcycle_left.png", "a red motorcycle in a garage"),
             ("sklearn", "flower.jpg", "an orange flower on a dark background")],
}
_FACE_CAPTION = "a close up of a person's face"


@dataclass(frozen=True)
class Photo:
    key: str
    type: str
    image: Image.Image
    caption: str


def _package_file(package: str, name: str) -> Path:
    try:
        base = files("skimage") / "data" if package == "skimage" else files("sklearn") / "datasets" / "images"
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the demo corpus uses photographs shipped with {'scikit-image' if package == 'skimage' else 'scikit-learn'}; "
            "install them with: .venv/bin/pip install scikit-image scikit-learn (scripts/setup.sh does)"
        ) from None
    path = Path(str(base / name))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: demo photograph missing from the installed {package}")
    return path


def demo_photos() -> tuple[dict[str, list[Photo]], list[Photo]]:
    """The source photographs by type, and the LFW faces (PER) separately."""
    photos: dict[str, list[Photo]] = {}
    for typ, entries in _PHOTOS.items():
        photos[typ] = []
        for pkg, name, caption in entries:
            with Image.open(_package_file(pkg, name)) as img:
                photos[typ].append(Photo(name.split(".")[0], typ, img.convert("RGB"), caption))
    faces_arr = np.load(_package_file("skimage", "lfw_subset.npy"))[:100]  # the first 100 are faces
    faces = [Photo(f"lfw{i:03d}", "PER", Image.fromarray((a * 255).round().astype(np.uint8)).convert("RGB"),
                   _FACE_CAPTION) for i, a in enumerate(faces_arr)]
    return photos, faces


def _crop(photo: Photo, rng: random.Random, size: int = 224) -> Image.Image:
    img = photo.image
    w, h = img.size
    if w >= 64 and h >= 64:
        scale = rng.uniform(0.45, 1.0)
        ratio = rng.uniform(0.8, 1.25)
        cw = min(w, int(round((scale * w * h * ratio) ** 0.5)))
        ch = min(h, int(round((scale * w * h / ratio) ** 0.5)))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15))
    return img.resize((size, size), Image.Resampling.BICUBIC)


def _tweet(template: str, fixed: dict[str, str], name: str, typ: str) -> tuple[list[str], list[str]]:
    tokens, tags = [], []
    for word in template.split(" "):
        if word == "{N}":
            tokens.append(name)
            tags.append(f"B-{typ}")
        else:
            tokens.append(word)
            tags.append(f"B-{fixed[word]}" if word in fixed else "O")
    return tokens, tags


def build_demo_corpus(out_dir: str | Path, seed: int = 0, sizes: tuple[int, int, int] = (360, 72, 144)) -> Path:
    """Write the demo corpus into ``out_dir`` (see the module docstring); return the tweets folder.

    Layout: ``tweets/{train,valid,test}.txt`` (Twitter format), ``images/<id>.jpg``,
    ``captions/tweets_captions.txt``. An existing corpus of the same version and seed is reused.
    """
    out = Path(out_dir)
    stamp = out / "VERSION"
    tag = f"demo {DEMO_VERSION} seed {seed} sizes {sizes}"
    if stamp.is_file() and stamp.read_text() == tag:
        return out / "tweets"
    rng = random.Random(seed)
    photos, faces = demo_photos()
    face_split = {"train": faces[:60], "valid": faces[60:75], "test": faces[75:]}
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "tweets").mkdir(parents=True, exist_ok=True)
    (out / "captions").mkdir(parents=True, exist_ok=True)
    types = list(_PHOTOS)
    captions: list[str] = []
    for split, n in zip(("train", "valid", "test"), sizes):
        names = TRAIN_NAMES if split == "train" else TEST_NAMES
        examples = []
        for k in range(n):
            tid = f"demo-{split}-{k:04d}"
            typ = types[k % len(types)]
            template, fixed = TEMPLATES[rng.randrange(len(TEMPLATES))]
            if typ == "PER" and rng.random() < 0.7:
                photo = rng.choice(face_split[split])
            else:
                photo = rng.choice(photos[typ])
            tokens, tags = _tweet(template, fixed, rng.choice(names), typ)
            _crop(photo, rng).save(out / "images" / f"{tid}.jpg", quality=90)
            captions.append(f"{tid}.jpg :{photo.caption}")
            examples.append(Example(tid, tokens, tags, image=tid))
        write_twitter(examples, out / "tweets" / f"{split}.txt")
    (out / "captions" / "tweets_captions.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")
    stamp.write_text(tag)
    return out / "tweets"


def demo_pair() -> tuple[str, Image.Image, Image.Image]:
    """A sentence and two unseen images that make its name a person, then a cat (for the quickstart)."""
    photos, faces = demo_photos()
    rng = random.Random(12345)
    person = _crop(faces[-1], rng)
    cat = _crop(photos["MISC"][0], rng)
    return "Handsome Jordan after a fish dinner", person, cat
