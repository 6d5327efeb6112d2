"""What every tagging model shares (mner.models.base): decoding and the CRF loss."""

from __future__ import annotations

import pytest
import torch

from mner.data.example import Example
from mner.models import MAFModel
from mner.processing.tagging import IGNORE_INDEX, TaggingBatch
from model_fixtures import ForwardRecorder, encoders, maf_config, one_thread, random_image  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

_TEXTS = [["Obama", "meets", "Merkel", "in", "Berlin"], ["Paris", "at", "night"], ["New", "York"]]
_TAGS = [["B-PER", "O", "B-PER", "O", "B-LOC"], ["B-LOC", "O", "O"], ["B-LOC", "I-LOC"]]


@pytest.fixture(scope="module")
def model(encoders) -> MAFModel:
    torch.manual_seed(0)
    return MAFModel(maf_config(encoders, view="both")).eval()


@pytest.fixture(scope="module")
def batch(model, tmp_path_factory) -> TaggingBatch:
    folder = tmp_path_factory.mktemp("base-images")
    examples = []
    for i, (tokens, tags) in enumerate(zip(_TEXTS, _TAGS)):
        random_image(i).save(folder / f"t{i}.png")
        examples.append(Example(f"t{i}", tuple(tokens), tuple(tags), image=str(folder / f"t{i}.png"),
                                caption=f"a photo number {i}"))
    out = model.processor()(examples)
    assert out.tags is not None
    return out


def test_decode_moves_the_batch_to_the_models_device(model, batch, monkeypatch):
    """A plain DataLoader leaves batches on the CPU; decode must bring them to the model (a GPU)."""
    moves: list[tuple[torch.device, TaggingBatch]] = []
    real_to = TaggingBatch.to

    def to(self, device):
        moved = real_to(self, device)
        moves.append((torch.device(device), moved))
        return moved

    monkeypatch.setattr(TaggingBatch, "to", to)
    forwards = ForwardRecorder(model, monkeypatch)
    model.decode(batch)
    device = next(model.parameters()).device
    assert [d for d, _ in moves] == [device]
    seen = forwards.calls[0][0]
    assert seen is moves[0][1], "the forward did not get the moved batch"


def test_decode_computes_no_loss_and_the_same_tags(model, batch, monkeypatch):
    """Decoding a batch with gold tags runs the forward without them (no CRF NLL thrown away);
    in eval mode the tags only gate the loss, so the emissions are the same."""
    with torch.no_grad():
        with_gold = model(batch)
    assert with_gold.loss is not None
    forwards = ForwardRecorder(model, monkeypatch)
    decoded = model.decode(batch, confidences=True)
    seen, out = forwards.calls[0]
    assert seen.tags is None and out.loss is None and out.losses == {}
    assert torch.equal(out.emissions, with_gold.emissions) and torch.equal(out.mask, with_gold.mask)
    assert batch.tags is not None, "decode changed the caller's batch"
    assert decoded.tags == [model.label_set.decode(p) for p in model.crf.decode(with_gold.emissions.float(),
                                                                                  with_gold.mask)]


def test_crf_loss_ignores_padding_but_refuses_an_ignored_tag_at_a_real_word(model, batch):
    with torch.no_grad():
        out = model(batch)
    mask = out.mask
    assert bool((batch.tags[~mask] == IGNORE_INDEX).all()) and bool((batch.tags[mask] >= 0).all())
    # padding holds -100: the loss is the one of any other padding value
    padded_zero = batch.tags.masked_fill(~mask, 0)
    assert torch.equal(model.crf_loss(out.emissions, batch.tags, mask),
                       model.crf_loss(out.emissions, padded_zero, mask))
    # a -100 at a real word is a bug in the data or the processor: an error, not a silent tag 0
    bad = batch.tags.clone()
    bad[0, 1] = IGNORE_INDEX
    with pytest.raises(ValueError, match="out of range"):
        model.crf_loss(out.emissions, bad, mask)
