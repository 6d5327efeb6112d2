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


# ============================================================================ issue 25.7: one scale, relative to uniform
def _axes_text(fig) -> str:
    """Every string a figure shows: texts, titles, axis labels, tick labels."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels()]
    return "\n".join(out)


def test_attention_levels_are_relative_to_uniform_not_to_their_own_range():
    from mner.explain.palette import ATTENTION_RAMP, ATTENTION_TOP, attention_levels, attention_summary

    n = 49
    assert attention_levels([1 / n] * n) == [0.0] * n                        # uniform: all clear
    peaked = [ATTENTION_TOP / n] + [(1 - ATTENTION_TOP / n) / (n - 1)] * (n - 1)
    assert attention_levels(peaked)[0] == pytest.approx(1.0) and max(attention_levels(peaked)[1:]) == 0.0
    # the issue's map: 0.014-0.083 over 49 regions (uniform 0.020): its peak is 4x, two thirds up the scale
    issue = np.linspace(0.014, 0.083, n)
    issue = list(issue / issue.sum())
    assert max(attention_levels(issue)) == pytest.approx(np.log2(max(issue) * n) / np.log2(ATTENTION_TOP))
    assert attention_summary(issue)["near_uniform"] is False
    # a near-uniform map (0.019-0.022): stretched to its own range its peak was full red; here it stays near clear
    flat = np.linspace(0.019, 0.022, n)
    flat = list(flat / flat.sum())
    own_range = (max(flat) - min(flat)) / (max(flat) - min(flat))
    assert own_range == 1.0 and max(attention_levels(flat)) < 0.05
    summary = attention_summary(flat)
    assert summary["near_uniform"] is True and summary["uniform"] == round(1 / n, 6) and summary["max_ratio"] < 1.1
    assert ATTENTION_RAMP["max_alpha"] <= 1


def test_explain_picture_has_a_colour_bar_and_says_near_uniform(tmp_path):
    import matplotlib.pyplot as plt

    from mner.report.explain import attention_overlay, figure_of

    n = 49
    flat = {"grid": [7, 7], "weights": [1 / n] * n}
    peak = {"grid": [7, 7], "weights": [0.5] + [0.5 / (n - 1)] * (n - 1)}
    result = {"match_probability": 0.5, "entities": [
        {"text": "Rob", "type": "PER", "start": 9, "end": 12, "confidence": 0.9, "explanation": {"pixels": flat}},
        {"text": "London", "type": "LOC", "start": 29, "end": 35, "confidence": 0.8, "explanation": {"pixels": peak}}]}
    assert attention_overlay(flat)[..., 3].max() == 0.0                 # a uniform map draws nothing
    assert attention_overlay(peak)[0, 0, 3] > 0.7 and attention_overlay(peak)[3, 3, 3] == 0.0
    fig = figure_of("Handsome Rob is all over London", result, random_image(1, size=70))
    try:
        shown = _axes_text(fig)
        rob, london = (ax for ax in fig.axes if ax.get_title().startswith(("Rob", "London")))
    finally:
        plt.close(fig)
    assert "1x (uniform)" in shown and "8x+" in shown                    # the colour bar's scale
    assert "uniform share" in shown and "heads averaged" in shown        # what the colour shows
    assert rob.get_xlabel().startswith("near uniform")
    assert "near uniform" not in london.get_xlabel() and "24.5x" in london.get_xlabel()


def test_served_explanations_say_how_far_from_uniform(saved):
    """A model whose queries are zero attends uniformly: its explanation says near uniform."""
    from mner.explain.predictor import InferenceItem, Predictor

    pipe = Pipeline.from_pretrained(saved / "model", device="cpu")
    attention = pipe.model.interaction.blocks[-1].attention
    d = attention.embed_dim
    with torch.no_grad():
        attention.in_proj_weight[:d].zero_()
        attention.in_proj_bias[:d].zero_()
    image = Image.open(saved / "photo.png").convert("RGB")
    res = Predictor(pipe)([InferenceItem("Obama in Paris", image, "a man on a bridge", explain=True)])[0]
    for e in res["entities"]:
        for view in ("pixels", "caption"):
            ex = e["explanation"][view]
            assert ex["near_uniform"] is True and ex["max_ratio"] == pytest.approx(1.0, abs=1e-3)
            assert ex["uniform"] == pytest.approx(1 / len(ex["weights"]), abs=1e-6)
    with torch.no_grad():   # a constant query against spread keys: the attention peaks
        attention.in_proj_bias[:d].fill_(30.0)
        attention.in_proj_weight[d:2 * d].normal_(0, 3.0)
    res = Predictor(pipe)([InferenceItem("Obama in Paris", image, None, explain=True)])[0]
    assert all(e["explanation"]["pixels"]["near_uniform"] is False and e["explanation"]["pixels"]["max_ratio"] > 2
               for e in res["entities"])
