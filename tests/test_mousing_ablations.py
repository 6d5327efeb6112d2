"""MOUSING acts as the poster says, and each ablation switch changes only what it names.

Each test inspects the computation a switch changes (the graph's nodes, the masks, the views, the
loss terms), not only that outputs differ. The last tests run at the real width (the offline
MiniLM, hidden_dim 256), where a learned-projection graph formed no word-caption edge at all: a
model trained for a few steps must have word-caption edges, and shuffling the captions must
change its output."""

from __future__ import annotations

import pytest
import torch

from fewshot_fixtures import episode_pair, ex, fewshot_model, tiny_bert  # noqa: F401
from model_fixtures import one_thread  # noqa: F401
from mner.data.episodes import Episode
from mner.fewshot.diagnose import diagnose, format_diagnostics, shuffle_captions

pytestmark = pytest.mark.usefixtures("one_thread")


def _views(model, eps=None, train=False):
    batch = model.processor()(eps or episode_pair())
    return batch, model.graph_views(batch.query, train=train)


def _loss_terms(model, seed=0):
    torch.manual_seed(seed)
    batch = model.processor()(episode_pair(), train=True)
    model.train()
    out = model(batch)
    return out, batch


def _captions(eps, caption):
    return [Episode(e.types, tuple(x.replace(caption=caption) for x in e.support),
                    tuple(x.replace(caption=caption) for x in e.query)) for e in eps]


def test_every_switch_removes_only_the_parameters_of_what_it_names(tiny_bert):
    full = fewshot_model(tiny_bert, "mousing")
    keys = set(full.state_dict())
    assert full.intervention.mode == "learned" and full.update.num_layers == 2 and full.views == ("caption",)
    expected = {
        "mousing-no-image": ("visual_proj.", "caption_encoder."),
        "mousing-no-intervention": ("intervention.scorer.",),
        "mousing-random": ("intervention.scorer.",),
        "mousing-gaussian": ("intervention.scorer.",),
        "mousing-no-mcis": ("intervention.scorer.",),
        "mousing-no-multiview": (),
    }
    for variant, prefixes in expected.items():
        m = fewshot_model(tiny_bert, variant)
        gone = keys - set(m.state_dict())
        added = set(m.state_dict()) - keys
        if variant == "mousing-no-image":
            # the graph's frozen text model: the caption encoder's in the full model, a frozen copy of
            # the text model (the same checkpoint) without one
            assert added and all(k.startswith("graph_text.") for k in added)
            assert {k.replace("graph_text.", "caption_encoder.", 1) for k in added} == {
                k for k in keys if k.startswith("caption_encoder.")}
            assert not any(p.requires_grad for p in m.graph_text.parameters())
            added = set()
        assert not added, variant
        assert {k for k in gone if not k.startswith(prefixes)} == set(), variant
        assert all(any(k.startswith(p) for k in gone) for p in prefixes), variant
        # the graph update (Eq. 9) is kept by every variant, w/o MCIS included
        assert m.update.num_layers == 2, variant


def test_the_graph_is_measured_in_the_frozen_text_models_space(tiny_bert):
    for variant in ("mousing", "mousing-no-image"):
        m = fewshot_model(tiny_bert, variant).eval()
        batch, views = _views(m)
        frozen = m.caption_encoder if m.caption_encoder is not None else m.graph_text
        with torch.no_grad():
            words = m.frozen_words(batch.query)
            states = frozen.model(input_ids=batch.query.words.input_ids,
                                  attention_mask=batch.query.words.attention_mask).last_hidden_state
        starts = batch.query.words.word_starts
        first = states.gather(1, starts[..., None].expand(-1, -1, states.shape[-1]))
        real = batch.query.words.word_mask
        torch.testing.assert_close(words[real], first[real])            # first sub-token, frozen model
        w = views.num_words
        from mner.models.mousing import cosine_adjacency

        sim = cosine_adjacency(words, real)
        torch.testing.assert_close(views.graph.similarity[:, :w, :w], sim)
        # fine-tuning the text encoder moves the word nodes, never the graph
        before = views.graph.similarity.clone()
        with torch.no_grad():
            for p in m.text_encoder.model.parameters():
                p.add_(0.5 * torch.randn_like(p))
        _, after = _views(m)
        torch.testing.assert_close(after.graph.similarity, before)
        assert not torch.allclose(after.view1, views.view1)


def test_the_full_model_trains_both_views_the_invariance_and_the_keep_rate_prior(tiny_bert):
    model = fewshot_model(tiny_bert, "mousing")
    out, _ = _loss_terms(model)
    assert set(out.losses) == {"crf_g1", "crf_g2", "invariance", "keep_prior"}
    cfg = model.config
    expected = (out.losses["crf_g1"] + out.losses["crf_g2"] + cfg.invariance_weight * out.losses["invariance"]
                + cfg.intervention.prior_weight * out.losses["keep_prior"])
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.losses["keep_prior"] > 0 and out.losses["invariance"] > 0
    out.loss.backward()
    for name, p in model.intervention.scorer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.visual_proj["caption"].weight.grad.abs().sum() > 0    # the caption projection trains


def test_no_image_builds_word_nodes_only_and_keeps_everything_else(tiny_bert):
    full = fewshot_model(tiny_bert, "mousing").eval()
    m = fewshot_model(tiny_bert, "mousing-no-image").eval()
    batch, views = _views(m)
    assert m.processor().views == ()
    assert views.node_mask.shape[1] == views.num_words                 # no visual node at all
    _, full_views = _views(full)
    assert full_views.node_mask.shape[1] > full_views.num_words
    assert (full_views.node_mask[:, full_views.num_words:]).any()
    # the rest of the model is the full one: same intervention, views and loss terms
    assert m.intervention.mode == "learned" and not m.one_view
    out, _ = _loss_terms(m)
    assert set(out.losses) == {"crf_g1", "crf_g2", "invariance", "keep_prior"}


def test_no_intervention_drops_the_masks_only(tiny_bert):
    m = fewshot_model(tiny_bert, "mousing-no-intervention").eval()
    batch, views = _views(m)
    real = views.node_mask[:, None, :, None] & views.node_mask[:, None, None, :]
    assert (views.intervention.masks[real.expand_as(views.intervention.masks)] == 1).all()
    for v in range(views.intervention.adjacency.shape[1]):
        torch.testing.assert_close(views.intervention.adjacency[:, v], views.graph.adjacency)
    # both views are still computed and decoded, and the loss keeps its terms (no scorer: no prior)
    assert not m.one_view
    torch.testing.assert_close(views.view1, views.view2)               # G2 = G1 in evaluation
    out, _ = _loss_terms(m)
    assert set(out.losses) == {"crf_g1", "crf_g2", "invariance"}


def test_no_multiview_decodes_and_trains_the_intervened_view_only(tiny_bert):
    # O scored against its prototype (the poster's), so that the whole output is decoder.emissions of view G2
    m = fewshot_model(tiny_bert, "mousing-no-multiview", o_distance="prototype").eval()
    batch = m.processor()(episode_pair())
    s, q = m.encode(batch.support), m.encode(batch.query)
    full_out = m.head(batch, s, q)
    # replacing the G1 slot changes nothing: only view G2 reaches the emissions
    junk = (torch.randn_like(s[0]), s[1], None), (torch.randn_like(q[0]), q[1], None)
    torch.testing.assert_close(m.head(batch, *junk).emissions, full_out.emissions)
    e2 = m.decoder.emissions(s[1], batch.support.tags, batch.support_episode, q[1], batch.query_episode,
                             batch.num_classes)
    torch.testing.assert_close(full_out.emissions, e2)
    out, _ = _loss_terms(m)
    assert set(out.losses) == {"crf", "invariance", "keep_prior"}
    cfg = m.config
    assert out.loss.item() == pytest.approx(2 * out.losses["crf"] + cfg.invariance_weight * out.losses["invariance"]
                                            + cfg.intervention.prior_weight * out.losses["keep_prior"], rel=1e-5)


def test_no_mcis_keeps_the_multimodal_graph_and_updates_on_g1_alone(tiny_bert):
    m = fewshot_model(tiny_bert, "mousing-no-mcis").eval()
    assert m.intervention is None and m.one_view
    batch, views = _views(m)
    assert views.intervention is None and views.node_mask.shape[1] > views.num_words   # the image is in the graph
    # the word nodes are the graph update over G1, not the projected words
    with torch.no_grad():
        states, word_mask = m.words(batch.query)
        words = m.text_proj(states)
        v_tokens, v_mask = m.visual_nodes(batch.query.visual, m.visual_proj)
        nodes, mask = torch.cat([words, v_tokens], 1), torch.cat([word_mask, v_mask], 1)
        expected = m.update(nodes, mask, views.graph.adjacency).view1[:, : views.num_words]
    torch.testing.assert_close(views.view1, expected)
    assert not torch.allclose(views.view1, words)
    # the captions reach the words
    with torch.no_grad():
        a = m(m.processor()(episode_pair())).emissions
        b = m(m.processor()(_captions(episode_pair(), "a dog on a beach"))).emissions
    assert not torch.allclose(a, b)
    out, _ = _loss_terms(m)
    assert set(out.losses) == {"crf"} and out.loss.item() == pytest.approx(2 * out.losses["crf"], rel=1e-6)


def test_random_intervention_draws_seeded_masks_at_test_time(tiny_bert):
    m = fewshot_model(tiny_bert, "mousing-random").eval()
    assert m.intervention.scorer is None
    _, a = _views(m)
    _, b = _views(m)
    torch.testing.assert_close(a.intervention.masks, b.intervention.masks, rtol=0, atol=0)
    off = a.graph.edges & ~torch.eye(a.node_mask.shape[1], dtype=torch.bool)
    assert a.intervention.masks[:, 0][off].std() > 0.05                # drawn, not constant
    # one tweet alone gets the masks it had inside the batch
    batch = m.processor()(episode_pair())
    first = batch.query.words
    with torch.no_grad():
        alone = m.graph_views(m.processor().tagging([episode_pair()[0].query[0]]))
    n = int(alone.node_mask[0].sum())
    idx = a.node_mask[0].nonzero().flatten()
    assert int(a.node_mask[0].sum()) == n and first.input_ids.shape[0] == 3
    torch.testing.assert_close(alone.intervention.masks[0][:, :n, :n][:, :, :],
                               a.intervention.masks[0][:, idx][:, :, idx], rtol=0, atol=0)
    other = fewshot_model(tiny_bert, "mousing-random", intervention={"mode": "random", "seed": 5}).eval()
    assert not torch.equal(_views(other)[1].intervention.masks, a.intervention.masks)
    out, _ = _loss_terms(m)
    assert set(out.losses) == {"crf_g1", "crf_g2", "invariance"}


def test_gaussian_intervention_adds_noise_in_training_only(tiny_bert):
    m = fewshot_model(tiny_bert, "mousing-gaussian")
    m.eval()
    _, ev = _views(m)
    for v in range(ev.intervention.weights.shape[1]):
        torch.testing.assert_close(ev.intervention.weights[:, v], ev.graph.weights)
    m.train()
    torch.manual_seed(0)
    _, tr = _views(m, train=True)
    edges = tr.graph.edges & ~torch.eye(tr.node_mask.shape[1], dtype=torch.bool)
    changed = (tr.intervention.weights - tr.graph.weights.unsqueeze(1)).abs() > 0
    assert changed[edges.unsqueeze(1).expand_as(changed)].float().mean() > 0.9


def test_learned_masks_at_test_time_are_the_environments_keep_probabilities(tiny_bert):
    m = fewshot_model(tiny_bert, "mousing").eval()
    _, views = _views(m)
    iv = views.intervention
    off = views.graph.edges & ~torch.eye(views.node_mask.shape[1], dtype=torch.bool)
    for v, shift in enumerate(m.intervention.shifts.tolist()):
        torch.testing.assert_close(iv.masks[:, v][off], torch.sigmoid(iv.logits + shift)[off])
    # two environments of one episode differ (and by the same shift for every tweet)
    assert not torch.allclose(iv.masks[:, 0][off], iv.masks[:, -1][off])


def test_old_checkpoints_load_as_they_were_trained(tiny_bert, tmp_path):
    import json

    from mner.models import load_model

    # a w/o MCIS checkpoint of the earlier code: no graph update (L = 0) but an (unused) edge scorer,
    # and no graph.space, no prior fields in its config
    m = fewshot_model(tiny_bert, "mousing", intervention={"init_bias": 2.0}, update={"layers": 0})
    folder = m.save_pretrained(tmp_path / "old")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"]["no_mcis"] = True
    cfg["config"]["update"]["layers"] = 2
    for key in ("space", "threshold", "sharpness"):
        cfg["config"]["graph"].pop(key)
    for key in ("keep_rate", "prior_weight", "environment_spread", "seed"):
        cfg["config"]["intervention"].pop(key)
    (folder / "config.json").write_text(json.dumps(cfg))
    old = load_model(folder)
    assert old.config.graph.space == "nodes" and old.config.intervention.prior_weight == 0.0
    assert old.config.intervention.environment_spread == 0.0 and old.config.update.layers == 0
    batch, views = _views(old.eval())
    real = batch.query.words.word_mask
    torch.testing.assert_close(views.view1[real], old.text_proj(old.words(batch.query)[0])[real])
    # a full model of the earlier code: similarities after the projections, unshifted masks sigmoid(l)
    full = fewshot_model(tiny_bert, "mousing", intervention={"init_bias": 2.0})
    folder = full.save_pretrained(tmp_path / "old-full")
    cfg = json.loads((folder / "config.json").read_text())
    for key in ("space", "threshold", "sharpness"):
        cfg["config"]["graph"].pop(key)
    for key in ("keep_rate", "prior_weight", "environment_spread", "seed"):
        cfg["config"]["intervention"].pop(key)
    (folder / "config.json").write_text(json.dumps(cfg))
    old = load_model(folder).eval()
    batch, views = _views(old)
    off = views.graph.edges & ~torch.eye(views.node_mask.shape[1], dtype=torch.bool)
    for v in range(old.config.intervention.environments):
        torch.testing.assert_close(views.intervention.masks[:, v][off], torch.sigmoid(views.intervention.logits)[off])
    with torch.no_grad():
        states, word_mask = old.words(batch.query)
        v_tokens, v_mask = old.visual_nodes(batch.query.visual, old.visual_proj)
        nodes = torch.cat([old.text_proj(states), v_tokens], 1)
        mask = torch.cat([word_mask, v_mask], 1)
    from mner.models.mousing import cosine_adjacency
    torch.testing.assert_close(views.graph.similarity, cosine_adjacency(nodes, mask))


# ------------------------------------------------------------------------------ diagnostics
def test_diagnostics_see_edges_masks_views_and_captions(tiny_bert):
    torch.manual_seed(0)
    m = fewshot_model(tiny_bert, "mousing").eval()
    d = diagnose(m, episode_pair())
    g = d["graph"]
    assert g["word_visual_pairs"] > 0 and 0 < g["word_visual_edge_share"] <= 1
    assert 0 < d["graph"]["mask_mean"] < 1 and d["graph"]["mask_std_across_environments"] > 0
    assert d["train_masks"]["mask_below_half"] > 0
    assert 0 <= d["views"]["g1_vs_g2"] <= 1
    assert set(d["captions"]) >= {"f1_real", "f1_shuffled", "f1_none", "tags_changed_by_shuffling"}
    text = format_diagnostics(d)
    assert "word-visual" in text and "shuffled" in text
    # a model without intervention reports masks of one
    d0 = diagnose(fewshot_model(tiny_bert, "mousing-no-intervention").eval(), episode_pair(), captions=False)
    assert d0["graph"]["mask_mean"] == pytest.approx(1.0) and d0["graph"]["mask_below_half"] == 0


def test_shuffle_captions_permutes_the_captions_of_the_distinct_tweets():
    eps = [Episode(("PER",), (ex("a", "x y", "B-PER O", caption="one"),),
                   (ex("b", "y z", "O B-PER", caption="two"), ex("c", "z", "B-PER", caption="three")))]
    shuffled, same = shuffle_captions(eps, seed=1)
    before = sorted(x.caption for e in eps for x in e.support + e.query)
    after = sorted(x.caption for e in shuffled for x in e.support + e.query)
    assert before == after and same < 3
    assert [x.tokens for x in shuffled[0].query] == [x.tokens for x in eps[0].query]
    dropped, _ = shuffle_captions(eps, drop=True)
    assert all(x.caption is None for e in dropped for x in e.support + e.query)


# ------------------------------------------------------------------------------ the real width
def _real_episodes():
    # BLIP-2 captions name what they read in the image: a sign, a logo, a landmark
    captions = {"obama": "a man in a suit speaking at a podium that says obama",
                "paris": "the eiffel tower in paris at night",
                "google": "a sign with the google logo on a building",
                "olympics": "athletes running on a track at the olympics",
                "mary": "a woman smiling at the camera", "london": "a red bus on a street in london",
                "apple": "an apple phone on a table", "oscars": "people on a red carpet at the oscars"}
    names = {"PER": ["obama", "mary"], "LOC": ["paris", "london"], "ORG": ["google", "apple"],
             "MISC": ["olympics", "oscars"]}
    eps = []
    for a, b in (("PER", "LOC"), ("ORG", "MISC"), ("PER", "ORG"), ("LOC", "MISC")):
        tweets = []
        for i in range(2):
            x, y = names[a][i], names[b][1 - i]
            tweets.append(ex(f"{a}{b}{i}", f"{x} visits {y} today", f"B-{a} O B-{b} O",
                             caption=f"{captions[x]} and {captions[y]}"))
        eps.append(Episode((a, b), (tweets[0],), (tweets[1],)))
    return eps


@pytest.mark.slow
def test_at_the_real_width_word_caption_edges_form_train_and_shuffled_captions_change_the_output():
    from mner.config import from_dict
    from mner.models.mousing import MOUSINGConfig, MOUSINGModel

    torch.manual_seed(0)
    cfg = from_dict(MOUSINGConfig, {"text_encoder": {"name": "minilm"}, "caption_encoder": {"name": "minilm"},
                                    "visual_view": "caption", "hidden_dim": 256}, "model")
    model = MOUSINGModel(cfg)
    eps = _real_episodes()
    proc = model.processor()
    groups = model.param_groups()                       # the recipe's two learning rates
    opt = torch.optim.AdamW([{"params": groups["pretrained"], "lr": 5e-5}, {"params": groups["new"], "lr": 1e-3}])
    before = model.visual_proj["caption"].weight.detach().clone()
    model.train()
    for step in range(4):
        opt.zero_grad()
        model(proc(eps[step % 2 * 2: step % 2 * 2 + 2], train=True)).loss.backward()
        opt.step()
    assert not torch.equal(before, model.visual_proj["caption"].weight)   # the caption projection trained
    model.eval()
    d = diagnose(model, eps, proc)
    assert d["graph"]["word_visual_edges"] > 0 and d["graph"]["tweets_with_word_visual_edge"] > 0.5
    assert d["train_masks"]["mask_below_half"] > 0.05                      # training masks drop edges
    shuffled, _ = shuffle_captions(eps, seed=3)
    with torch.no_grad():
        a = model(proc(eps[:2])).emissions
        b = model(proc(shuffled[:2])).emissions
    assert not torch.allclose(a, b)
