"""MOUSING: few-shot multimodal NER with multimodal causal intervention graphs (Lu et al., poster).

``forward`` reads top to bottom as the poster's framework (equation numbers are the poster's):

1. nodes: one per word (fine-tuned text encoder, first sub-token) and one per visual token (image
   region and/or caption token, frozen encoder), in one space of width d: CLIP's joint space through
   CLIP's own heads (``shared_space: clip``, the poster's, :mod:`mner.encoders.clip_space`), or, for
   encoders without a joint space (the offline ones), a learned projection per side (ours);
2. multimodal graph construction: cosine similarities between all nodes, intra- and inter-modal,
   edges below delta dropped (Eq. 2), :mod:`.similarity_graph`. The similarity is measured where the
   modalities share a space before any learned projection (``graph.space: encoder``, ours): the
   text encoder's word states against the caption encoder's token states (one text model), or
   CLIP's joint space; the learned projections then carry the messages;
3. MCIS, intervention graph generation: V environments (Eq. 6) of relaxed-Bernoulli edge masks at
   temperature gamma (Eq. 7), each environment one intervention strength shared by the episode, the
   scorer held to a keep-rate prior, :mod:`.causal_intervention`;
4. MCIS, multi-view graph updating: L layers (Eq. 9) over view G1 (the similarity graph) and view G2
   (the intervened graphs), :mod:`.multiview_update`;
5. prototype-based CRF decoder on each view's word nodes: prototypes of the support words, emissions
   ``-d(z, c_m)``, label-agnostic CRF transitions mapped onto the episode's labels,
   :mod:`.prototype_crf`;
6. loss ``L_CRF = CE(D(P|G1), y) + CE(D(P|G2), y)`` plus lambda times the variance across the V
   environments of their tagging losses (Eq. 14, our reading: an invariance term) plus beta times the
   keep-rate prior of the intervention (ours). Inference: the two views' emissions averaged, then
   Viterbi.

Ablations (config switches, as the poster's table), each changing only what it names:
``no_image`` (word nodes only), ``no_intervention`` (no masks: every environment is G1; both views,
the loss terms and the invariance term stay), ``no_multiview`` (only G2), ``no_mcis`` (the multimodal
graph G1 kept and updated; no intervention, no second view), ``intervention.mode: random`` (masks
drawn at random at the same keep rates), ``intervention.mode: gaussian`` (Gaussian noise on the edge
weights instead of masks). A variant with one view counts its tagging loss twice, so every variant
trains at the loss scale of the full model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mner.encoders.clip_space import ClipSpace
from mner.models.base import TaggerOutput
from mner.errors import MNERError
from mner.models.episodic import EpisodicTagger
from mner.models.mousing.causal_intervention import InterventionGenerator, InterventionOut
from mner.models.mousing.config import MOUSINGConfig
from mner.models.mousing.multiview_update import MultiViewUpdate
from mner.models.mousing.prototype_crf import PrototypeCRF
from mner.models.mousing.similarity_graph import GraphOut, SimilarityGraph
from mner.processing.episodes import EpisodeBatch
from mner.processing.tagging import TaggingBatch

__all__ = ["MOUSINGModel", "MOUSINGViews"]


@dataclass
class MOUSINGViews:
    """What the graph makes of one side of a batch (support or query tweets).

    Attributes:
        view1, view2: ``(B, W, d)`` the word nodes after the update over G1 and over G2 (the same
            tensor for the one-view variants).
        environments: ``(B, W, V, d)`` the word nodes after the update over each environment
            separately (a training step with lambda > 0 and an intervention), else None.
        prior: the intervention's keep-rate prior (``learned`` mode), else None.
        graph, intervention, node_mask: G1, G2 and the node mask (diagnostics); None without a graph.
        num_words: W, the word nodes come first in every graph.
    """

    view1: torch.Tensor
    view2: torch.Tensor
    environments: torch.Tensor | None = None
    prior: torch.Tensor | None = None
    graph: GraphOut | None = None
    intervention: InterventionOut | None = None
    node_mask: torch.Tensor | None = None
    num_words: int = 0

    def as_tuple(self) -> tuple:
        return self.view1, self.view2, self.environments


def _tweet_seeds(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One integer per tweet from its sub-token ids alone (not its batch or padding): seeds the
    ``random`` intervention's draws outside training."""
    ids = (input_ids.long() * attention_mask.long()).cpu()
    weights = torch.arange(1, ids.shape[1] + 1, dtype=torch.long) * 2654435761 % 1_000_000_007
    return (ids * weights).sum(-1) % 1_000_000_007


class MOUSINGModel(EpisodicTagger):
    model_type = "mousing"
    config_class = MOUSINGConfig

    def __init__(self, config: MOUSINGConfig, *, clip_space: ClipSpace | None = None, **encoders):
        super().__init__(config, **encoders)
        self.clip_space = None
        if config.shared_space == "clip":
            self.clip_space = clip_space or ClipSpace.from_pretrained(config.clip_model or config.image_encoder.name)
            d = self.clip_space.projection_dim
            if self.text_encoder.hidden_size != self.clip_space.text_hidden:
                raise MNERError(f"shared_space clip: the text encoder ({config.text_encoder.name}) is not the "
                                "text tower of the CLIP checkpoint; use the same CLIP checkpoint for both")
        else:
            d = config.hidden_dim
            self.text_proj = nn.Linear(self.text_encoder.output_dim, d)
            if self.views:
                self.visual_proj = nn.ModuleDict({v: nn.Linear(self.visual_dims[v], d) for v in self.views})
            if self.views and config.graph.space in ("encoder", "frozen"):
                width = self.visual_dims["caption"]
                if width != self.text_encoder.hidden_size:
                    raise MNERError(
                        f"graph.space encoder compares words and caption tokens in the text model's own "
                        f"space, but the caption encoder's states are {width} wide and the text encoder's "
                        f"{self.text_encoder.hidden_size}: use the same text model for both, or "
                        f"graph: {{space: nodes, threshold: soft}}")
        g, iv, up = config.graph, config.intervention, config.update
        self.graph_text = None
        if g.space == "frozen" and self.clip_space is None and self.caption_encoder is None:
            # w/o Image: no caption encoder to lend its frozen text model, so the graph keeps a frozen
            # copy of the text model as it is before fine-tuning (the same weights the full model reads)
            import copy

            from mner.encoders.caption import CaptionEncoder

            self.graph_text = CaptionEncoder(config.caption_encoder, model=copy.deepcopy(self.text_encoder.model),
                                             tokenizer=self.text_encoder.tokenizer.tokenizer)
        self.graph = SimilarityGraph(g.delta, g.normalization, g.self_loops, g.threshold, g.sharpness)
        self.intervention = None
        if not config.no_mcis:
            self.intervention = InterventionGenerator(
                d, iv.environments, iv.temperature, mode="none" if config.no_intervention else iv.mode,
                rank=iv.rank, noise_std=iv.noise_std, init_bias=iv.init_bias, normalization=g.normalization,
                keep_rate=iv.keep_rate, environment_spread=iv.environment_spread, seed=iv.seed)
        self.update = MultiViewUpdate(d, up.layers, up.dropout, up.share_weights, up.activation)
        self.decoder = PrototypeCRF(learn_transitions=config.learn_transitions)

    @property
    def one_view(self) -> bool:
        """The variants that update and decode one view (w/o Multi-view: G2; w/o MCIS: G1)."""
        return self.config.no_multiview or self.config.no_mcis

    @classmethod
    def upgrade_config(cls, raw: dict) -> dict:
        """Checkpoints written before a default changed keep the model they were trained and scored as.

        Without ``o_distance`` (saved before the field existed, when O was always scored against its
        prototype): ``o_distance: prototype`` (and ``o_neighbours: 1``, unused by it). Without ``graph.space`` (saved before the graph measured
        its similarities in the encoders' space): similarities after the learned projections, no
        keep-rate prior, unshifted environments, the scorer's old initial bias, and "w/o MCIS" as no
        graph update at all (L = 0)."""
        raw = dict(raw)
        if "o_distance" not in raw:
            raw.update(o_distance="prototype", o_neighbours=raw.get("o_neighbours", 1))
        graph = dict(raw.get("graph") or {})
        if "space" in graph:
            return raw
        raw["graph"] = {**graph, "space": "nodes", "threshold": "hard"}
        iv = dict(raw.get("intervention") or {})
        iv.setdefault("init_bias", 2.0)
        raw["intervention"] = {**iv, "prior_weight": 0.0, "environment_spread": 0.0}
        if raw.get("no_mcis"):
            raw["update"] = {**dict(raw.get("update") or {}), "layers": 0}
        return raw

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Weights of a w/o MCIS model of the earlier code carry an edge scorer that was built but never
        used (nor trained); a w/o MCIS model has no intervention, so they are left out."""
        if self.intervention is None:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("intervention.")}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------------------ saving
    def _save_assets(self, folder: Path) -> None:
        super()._save_assets(folder)
        if self.clip_space is not None:
            (folder / "clip_space").mkdir(parents=True, exist_ok=True)
            self.clip_space.clip_config.to_json_file(str(folder / "clip_space" / "config.json"))

    @classmethod
    def _from_assets(cls, config: MOUSINGConfig, assets: Path) -> "MOUSINGModel":
        space = None
        if config.shared_space == "clip":
            from transformers import CLIPConfig

            space = ClipSpace(CLIPConfig.from_json_file(str(assets / "clip_space" / "config.json")))
        model = super()._from_assets(config, assets, clip_space=space)
        return model

    # ------------------------------------------------------------------------------ graph
    def graph_views(self, part: TaggingBatch, train: bool = False) -> MOUSINGViews:
        """The graph of every tweet of ``part`` and its word nodes after the update (see
        :class:`MOUSINGViews`); ``train``: a training step with gold tags."""
        cfg = self.config
        states, word_mask = self.words(part)
        hidden = states[..., : self.text_encoder.hidden_size]
        if cfg.graph.space == "frozen" and self.clip_space is None:
            hidden = self.frozen_words(part)
        if self.clip_space is not None:                                                # CLIP's joint space
            words = self.clip_space.words(self.dropout(hidden))
        else:
            words = self.text_proj(self.dropout(states))                               # word nodes
        nodes, mask, space = words, word_mask, hidden
        if self.views:
            features = self.visual_features(part.visual)
            if self.clip_space is not None:
                (_, feats), = features
                v_tokens = self.clip_space.patches(feats.tokens.to(words.dtype))
                v_mask = feats.mask
                v_space = None
            else:
                v_tokens, v_mask, _ = self.project_visual(features, self.visual_proj)   # visual nodes
                v_space = (features[0][1].tokens.to(hidden.dtype)
                           if cfg.graph.space in ("encoder", "frozen") else None)
            nodes, mask = torch.cat([words, v_tokens], 1), torch.cat([word_mask, v_mask], 1)
            space = torch.cat([hidden, v_space], 1) if v_space is not None else None
        if self.clip_space is not None:
            space = nodes                                                              # the joint space
        elif cfg.graph.space == "nodes":
            space = None
        graph = self.graph(nodes, mask, space)                                         # Eq. 2
        w = words.shape[1]
        if self.intervention is None:                                                  # w/o MCIS: G1 only
            view = self.update(nodes, mask, graph.adjacency).view1[:, :w]              # Eq. 9
            return MOUSINGViews(view, view, graph=graph, node_mask=mask, num_words=w)
        seeds = None
        if self.intervention.mode == "random" and not self.training:
            seeds = _tweet_seeds(part.words.input_ids, part.words.attention_mask)
        interv = self.intervention(nodes, graph, mask, seeds=seeds)                    # Eq. 6, 7
        environments = train and cfg.invariance_weight > 0
        out = self.update(nodes, mask, graph.adjacency, interv.adjacency,              # Eq. 9
                          per_environment=environments)
        view2 = out.view2[:, :w]
        view1 = view2 if cfg.no_multiview else out.view1[:, :w]
        envs = out.environments[:, :, :w].transpose(1, 2) if out.environments is not None else None
        return MOUSINGViews(view1, view2, envs, interv.prior, graph, interv, mask, w)

    @torch.no_grad()
    def frozen_words(self, part: TaggingBatch) -> torch.Tensor:
        """``(B, W, H)`` word states of the *frozen* text model (the caption encoder's copy of the text
        encoder's checkpoint), pooled as the text encoder pools: the graph's space for ``graph.space:
        frozen`` (w/o Image: the frozen copy of the text model it keeps for this)."""
        te = self.text_encoder
        frozen = self.caption_encoder if self.caption_encoder is not None else self.graph_text
        words = part.words.to(te.device)
        ids, am = words.input_ids, words.attention_mask
        if ids.shape[1] > te.max_length:
            raise MNERError(f"a tweet of {ids.shape[1]} sub-tokens exceeds the text model's {te.max_length}; "
                            "graph.space frozen reads tweets up to that length")
        tokens = frozen.model(input_ids=ids, attention_mask=am).last_hidden_state
        tokens = tokens * am[..., None].to(tokens.dtype)
        return te._pool_words(tokens, words)

    def encode(self, part: TaggingBatch, train: bool = False):
        """Word nodes after the graph update: ``(view1, view2, per-environment | None)``, each (B, W, d);
        the per-environment states (B, W, V, d) only for a training step with lambda > 0."""
        return self.graph_views(part, train).as_tuple()

    # ------------------------------------------------------------------------------ model
    def forward(self, batch: EpisodeBatch) -> TaggerOutput:
        train = self.training and batch.query.tags is not None
        support, query = self.graph_views(batch.support, train), self.graph_views(batch.query, train)
        priors = [v.prior for v in (support, query) if v.prior is not None]
        prior = torch.stack(priors).mean() if priors else None
        return self.head(batch, support.as_tuple(), query.as_tuple(), prior=prior)

    def view_emissions(self, batch: EpisodeBatch, support: tuple, query: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D(P|G1), D(P|G2))`` emissions (Q, W', C) of the query: the same tensor for a one-view variant."""
        (s1, s2, _), (q1, q2, _) = support, query

        def emissions(s, q):
            return self.decoder.emissions(s, batch.support.tags, batch.support_episode, q, batch.query_episode,
                                          batch.num_classes)

        if self.one_view:
            e = emissions(s2, q2)
            return e, e
        return emissions(s1, q1), emissions(s2, q2)

    def head(self, batch: EpisodeBatch, support: tuple, query: tuple, prior: torch.Tensor | None = None) -> TaggerOutput:
        cfg = self.config
        tags = batch.query.tags
        (_, _, s_env), (_, _, q_env) = support, query
        labels = batch.labels[0]
        e1, e2 = self.view_emissions(batch, support, query)                            # D(P|G1), D(P|G2)
        losses: dict[str, torch.Tensor] = {}
        loss = None
        if tags is not None:
            mask = batch.query.words.word_mask
            if self.one_view:
                losses["crf"] = self.decoder.loss(e1, tags, mask, labels)
                loss = 2 * losses["crf"]                                               # L_CRF, one view twice
            else:
                losses["crf_g1"] = self.decoder.loss(e1, tags, mask, labels)
                losses["crf_g2"] = self.decoder.loss(e2, tags, mask, labels)
                loss = losses["crf_g1"] + losses["crf_g2"]                             # L_CRF
            if s_env is not None and q_env is not None:
                env_losses = torch.stack([
                    self.decoder.loss(self.decoder.emissions(s_env[:, :, v], batch.support.tags, batch.support_episode,
                                                             q_env[:, :, v], batch.query_episode, batch.num_classes),
                                      tags, mask, labels)
                    for v in range(s_env.shape[2])])
                losses["invariance"] = env_losses.var(unbiased=False)
                loss = loss + cfg.invariance_weight * losses["invariance"]             # Eq. 14
            if prior is not None and cfg.intervention.prior_weight > 0:
                losses["keep_prior"] = prior
                loss = loss + cfg.intervention.prior_weight * prior                    # keep-rate prior (ours)
        em = e1 if e2 is e1 else (e1 + e2) / 2
        if cfg.o_distance == "nearest":                                                # decoding only (ours)
            em = torch.cat([self.o_neighbour_column(batch, support, query)[..., None], em[..., 1:]], -1)
        return self.output(batch, loss, em, losses,
                           transitions=self.decoder.transitions(labels, cfg.transition_scale))

    def o_neighbour_column(self, batch: EpisodeBatch, support: tuple, query: tuple) -> torch.Tensor:
        """``(Q, W')`` the O column of ``o_distance: nearest``, averaged over the decoded views as the
        emissions are (:meth:`PrototypeCRF.o_neighbour_emissions`)."""
        (s1, s2, _), (q1, q2, _) = support, query

        def column(s, q):
            return self.decoder.o_neighbour_emissions(s, batch.support.tags, batch.support_episode, q,
                                                      batch.query_episode, self.config.o_neighbours)

        if self.one_view:
            return column(s2, q2)
        return (column(s1, q1) + column(s2, q2)) / 2
