"""The contract every registered model keeps (in the spirit of transformers' shared model
tester), checked for each entry of ``mner.models.MODELS`` on its tiny builder from
``model_fixtures.CONTRACT_FIXTURES``: forward and backward, save/load round trip, decoding,
determinism under a seed. A new model cannot skip it: a registered model without a fixture fails.
"""

from __future__ import annotations

import math

import pytest
import torch

from mner.config import to_dict
from mner.models import MODELS, MNERModel, load_model
from model_fixtures import CONTRACT_FIXTURES, one_thread  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL_TYPES = sorted(MODELS)


def test_every_registered_model_has_a_contract_fixture():
    missing = sorted(set(MODELS) - set(CONTRACT_FIXTURES))
    assert not missing, (f"models {missing} are registered in mner.models.MODELS but have no tiny builder in "
                         "tests/model_fixtures.py CONTRACT_FIXTURES; add one so the contract suite checks them")
    assert MODEL_TYPES, "no model is registered"


def _build(model_type: str, folder):
    if model_type not in CONTRACT_FIXTURES:
        pytest.fail(f"{model_type}: no CONTRACT_FIXTURES entry in tests/model_fixtures.py")
    model, inputs = CONTRACT_FIXTURES[model_type](folder)
    assert isinstance(model, MNERModel) and model.model_type == model_type
    assert type(model) is MODELS[model_type]
    assert inputs, "the fixture must give some training inputs"
    return model, inputs


@pytest.fixture(scope="module", params=MODEL_TYPES)
def built(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"contract-{request.param}")
    model, inputs = _build(request.param, folder)
    return request.param, model, inputs, folder


def _eval_output(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(model.processor()(inputs))


def test_forward_gives_a_finite_loss_and_gradients_reach_the_trainable_parameters(built):
    _, model, inputs, _ = built
    model.train()
    model.zero_grad(set_to_none=True)
    batch = model.processor()(inputs, train=True)
    out = model(batch)
    assert out.loss is not None and out.loss.dim() == 0 and math.isfinite(float(out.loss.detach()))
    assert all(math.isfinite(v) for v in out.losses.values())
    out.loss.backward()
    groups = {name: params for name, params in model.param_groups().items() if params}
    assert groups, "param_groups() gave no trainable parameter"
    for name, params in groups.items():
        assert all(p.requires_grad for p in params), f"param group {name!r} holds a frozen parameter"
        reached = [p for p in params if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        assert reached, f"no gradient reached the {name!r} parameters"
    model.zero_grad(set_to_none=True)


def test_output_names_every_row_and_carries_the_decoding_scores(built):
    _, model, inputs, _ = built
    out = _eval_output(model, inputs)
    b, w, c = out.emissions.shape
    assert out.mask.shape == (b, w) and out.mask.dtype == torch.bool
    assert len(out.labels) == b and all(len(labels) == c for labels in out.labels)
    assert all(labels[0] == "O" for labels in out.labels)
    assert out.transitions is None or out.transitions.shape == (c, c)
    for scores in (out.start, out.end):
        assert scores is None or scores.shape == (c,)


def test_gold_tags_only_add_a_loss(built):
    _, model, inputs, _ = built
    model.eval()
    batch = model.processor()(inputs)
    with torch.no_grad():
        with_gold = model(batch)
        without = model(batch.without_tags())
        again = model(batch)
    assert with_gold.loss is not None and without.loss is None
    assert torch.equal(with_gold.emissions, without.emissions)
    assert again.loss is not None, "without_tags() changed the caller's batch"


def test_decode_gives_one_tag_list_per_row_from_the_rows_labels(built):
    _, model, inputs, _ = built
    batch = model.processor()(inputs)
    out = _eval_output(model, inputs)
    decoded = model.decode(batch, confidences=True)
    assert len(decoded.tags) == out.emissions.shape[0] == len(decoded.confidences)
    for row, (tags, conf) in enumerate(zip(decoded.tags, decoded.confidences)):
        n = int(out.mask[row].sum())
        assert len(tags) == n == len(conf)
        labels = set(out.labels[row])
        if out.scheme == "io":  # an IO model's classes decode to IOB2 tags of the same types
            labels |= {f"B-{label[2:]}" for label in labels if label != "O"}
        assert set(tags) <= labels
        assert all(0.0 <= p <= 1.0 + 1e-6 for p in conf)
    assert model.decode(batch).tags == decoded.tags


def test_save_and_load_give_the_same_model(built, tmp_path):
    model_type, model, inputs, _ = built
    emissions = _eval_output(model, inputs).emissions
    folder = model.save_pretrained(tmp_path / "saved")
    loaded = load_model(folder)
    assert type(loaded) is type(model)
    assert to_dict(loaded.config) == to_dict(model.config)
    assert torch.equal(_eval_output(loaded, inputs).emissions, emissions)
    assert loaded.decode(loaded.processor()(inputs)).tags == model.decode(model.processor()(inputs)).tags


def test_the_same_seed_builds_the_same_model(built, tmp_path):
    model_type, model, inputs, _ = built
    again, inputs_again = _build(model_type, tmp_path)
    first, second = model.state_dict(), again.state_dict()
    assert list(first) == list(second)
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"weights differ between two builds with the same seed: {different[:5]}"
    assert torch.equal(_eval_output(model, inputs).emissions, _eval_output(again, inputs_again).emissions)
