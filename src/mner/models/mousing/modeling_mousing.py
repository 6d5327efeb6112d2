"""MOUSING: few-shot multimodal NER with multimodal causal intervention graphs (Lu et al., poster).

``forward`` reads top to bottom as the poster's framework (equation numbers are the poster's):

1. nodes: one per word (fine-tuned text encoder, first sub-token) and one per visual token (image
   region and/or caption token, frozen encoder), in one space of width d: CLIP's joint space through
   CLIP's own heads (``shared_space: clip``, the poster's, :mod:`mner.encoders.clip_space`), or, for
   encoders without a joint space (the offline ones), a learned projection per side (ours);
2. multimodal graph construction: cosine similarities between all nodes, intra- and inter-modal,
   edges below delta dropped (Eq. 2), :mod:`.similarity_graph`;
3. MCIS, intervention graph generation: V environments (Eq. 6) of relaxed-Bernoulli edge masks at
   temperature gamma (Eq. 7), :mod:`.causal_intervention`;
4. MCIS, multi-view graph updating: L layers (Eq. 9) over view G1 (the similarity graph) and view G2
   (the intervened graphs), :mod:`.multiview_update`;
5. prototype-based CRF decoder on each view's word nodes: prototypes of the support words, emissions
   ``-d(z, c_m)``, label-agnostic CRF transitions mapped onto the episode's labels,
   :mod:`.prototype_crf`;
6. loss ``L_CRF = CE(D(P|G1), y) + CE(D(P|G2), y)`` plus lambda times the variance of the
   per-environment tagging losses (Eq. 14, our reading: an invariance term across environments).
   Inference: the two views' emissions averaged, then Viterbi.

Ablations (config switches, as the poster's table): ``no_image`` (word nodes only),
``no_intervention`` (G2 = G1), ``no_multiview`` (only G2), ``no_mcis`` (no graph update at all),
``intervention.mode: random`` (masks drawn at random), ``intervention.mode: gaussian`` (Gaussian
noise on the edge weights instead of learned masks).
"""

from __future__ import annotations

import torch
from torch import nn

from pathlib import Path

from mner.encoders.clip_space import ClipSpace
from mner.models.base import TaggerOutput
from mner.errors import MNERError
from mner.models.episodic import EpisodicTagger
from mner.models.mousing.causal_intervention import InterventionGenerator
from mner.models.mousing.config import MOUSINGConfig
from mner.models.mousing.multiview_update import MultiViewUpdate
from mner.models.mousing.prototype_crf import PrototypeCRF
from mner.models.mousing.similarity_graph import SimilarityGraph
from mner.processing.episodes import EpisodeBatch
from mner.processing.tagging import TaggingBatch

__all__ = ["MOUSINGModel"]


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
        g, iv, up = config.graph, config.intervention, config.update
        self.graph = SimilarityGraph(g.delta, g.normalization, g.self_loops)
        self.intervention = InterventionGenerator(
            d, iv.environments, iv.temperature, mode="none" if config.no_intervention else iv.mode,
            rank=iv.rank, noise_std=iv.noise_std, init_bias=iv.init_bias, normalization=g.normalization)
        self.update = MultiViewUpdate(d, 0 if config.no_mcis else up.layers, up.dropout, up.share_weights,
                                      up.activation)
        self.decoder = PrototypeCRF(learn_transitions=config.learn_transitions)

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
    def encode(self, part: TaggingBatch, train: bool = False):
        """Word nodes after the graph update: ``(view1, view2, per-environment | None)``, each (B, W, d);
        the per-environment states (B, W, V, d) only for a training step with lambda > 0."""
        cfg = self.config
        environments = (train and cfg.invariance_weight > 0 and not cfg.no_mcis and not cfg.no_intervention)
        states, word_mask = self.words(part)
        if self.clip_space is not None:                                                # CLIP's joint space
            words = self.clip_space.words(self.dropout(states[..., : self.text_encoder.hidden_size]))
        else:
            words = self.text_proj(self.dropout(states))                               # word nodes
        if cfg.no_mcis:
            return words, words, None
        nodes, mask = words, word_mask
        if self.views:
            if self.clip_space is not None:
                (_, feats), = self.visual_tokens(part.visual)
                v_tokens = self.clip_space.patches(feats.tokens.to(words.dtype))
                v_mask = feats.mask & part.visual.present["pixels"][:, None]
            else:
                v_tokens, v_mask = self.visual_nodes(part.visual, self.visual_proj)     # patch nodes
            nodes, mask = torch.cat([words, v_tokens], 1), torch.cat([word_mask, v_mask], 1)
        graph = self.graph(nodes, mask)                                                # Eq. 2
        interv = self.intervention(nodes, graph, mask)                                 # Eq. 6, 7
        out = self.update(nodes, mask, graph.adjacency, interv.adjacency,              # Eq. 9
                          per_environment=environments)
        w = words.shape[1]
        view2 = out.view2[:, :w]
        view1 = view2 if cfg.no_multiview else out.view1[:, :w]
        envs = out.environments[:, :, :w].transpose(1, 2) if out.environments is not None else None
        return view1, view2, envs

    # ------------------------------------------------------------------------------ model
    def head(self, batch: EpisodeBatch, support: tuple, query: tuple) -> TaggerOutput:
        cfg = self.config
        tags = batch.query.tags
        (s1, s2, s_env), (q1, q2, q_env) = support, query
        labels = batch.labels[0]
        n_cls = batch.num_classes

        def emissions(s, q):
            return self.decoder.emissions(s, batch.support.tags, batch.support_episode, q, batch.query_episode, n_cls)

        e1 = emissions(s1, q1)                                                         # D(P | G1)
        e2 = e1 if cfg.no_multiview or cfg.no_mcis else emissions(s2, q2)              # D(P | G2)
        losses: dict[str, torch.Tensor] = {}
        loss = None
        if tags is not None:
            mask = batch.query.words.word_mask
            if e2 is e1:
                loss = losses["crf"] = self.decoder.loss(e1, tags, mask, labels)
            else:
                losses["crf_g1"] = self.decoder.loss(e1, tags, mask, labels)
                losses["crf_g2"] = self.decoder.loss(e2, tags, mask, labels)
                loss = losses["crf_g1"] + losses["crf_g2"]                             # L_CRF
            if s_env is not None and q_env is not None:
                env_losses = torch.stack([self.decoder.loss(emissions(s_env[:, :, v], q_env[:, :, v]), tags, mask, labels)
                                          for v in range(s_env.shape[2])])
                losses["invariance"] = env_losses.var(unbiased=False)
                loss = loss + cfg.invariance_weight * losses["invariance"]             # Eq. 14
        em = e1 if e2 is e1 else (e1 + e2) / 2
        return self.output(batch, loss, em, losses, transitions=self.decoder.transitions(labels))
