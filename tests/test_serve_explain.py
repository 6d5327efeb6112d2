"""``mner explain``: one tweet's entities and the picture of what each looked at."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mner.cli.main import main
from mner.models import MAFModel
from mner.pipeline import Pipeline
from mner.report.explain import explain_figure
from model_fixtures import encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(encoders, tmp_path_factory):
    torch.manual_seed(0)
    model = MAFModel(maf_config(encoders, view="both")).eval()
    with torch.no_grad():  # every word a person
        model.emissions.weight.zero_()
        model.emissions.bias.fill_(-20.0)
        model.emissions.bias[model.label_set.index("B-PER")] = 20.0
    folder = tmp_path_factory.mktemp("explain")
    model.save_pretrained(folder / "model")
    random_image(3, size=64).save(folder / "photo.png")
    return folder


def test_explain_writes_a_png_and_prints_the_pipelines_entities(saved, capsys):
    out = saved / "pics" / "why.png"
    code = main(["explain", str(saved / "model"), "--text", "Obama in Paris", "--image", str(saved / "photo.png"),
                 "--caption", "a man on a bridge", "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pipe = Pipeline.from_pretrained(saved / "model", device="cpu")
    bare = pipe("Obama in Paris", image=str(saved / "photo.png"), caption="a man on a bridge")
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in printed["entities"]] == \
        [(e["text"], e["type"], e["start"], e["end"]) for e in bare]
    assert 0.0 <= printed["match_probability"] <= 1.0 and printed["out"] == str(out)
    img = Image.open(out)
    assert img.format == "PNG" and img.width > 400 and img.height > 200
    # the heatmap panels are not blank: many distinct colours
    assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 500


def test_explain_refusals(saved):
    assert main(["explain", str(saved / "model"), "--text", "a", "--out", str(saved / "x.jpg")]) == 2
    assert main(["explain", str(saved / "nothing"), "--text", "a", "--out", str(saved / "x.png")]) == 2


def test_figure_without_entities_or_image(tmp_path):
    out = explain_figure("nothing here", {"entities": [], "match_probability": None}, None, tmp_path / "n.png")
    assert Image.open(out).format == "PNG"
