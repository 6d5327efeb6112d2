"""The configuration of MOUSING's graph modules (poster: Eq. 2 delta, Eq. 6 V, Eq. 7 gamma, Eq. 9 L).

The poster names these hyperparameters and plots F1 against them (its Figure 4) but prints no
value, so every default below is **(ours)**: a starting point to tune on the dev episodes.
A value out of range raises :class:`mner.config.ConfigError` (an :class:`mner.errors.MNERError`)
naming the field; read through :func:`mner.config.from_dict` the message also carries the
dotted config path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mner.config import ConfigError
from mner.models.episodic import EpisodicConfig

__all__ = [
    "ACTIVATIONS",
    "GraphConfig",
    "INTERVENTION_MODES",
    "InterventionConfig",
    "MOUSINGConfig",
    "NORMALIZATIONS",
    "O_DISTANCES",
    "SPACES",
    "THRESHOLDS",
    "UpdateConfig",
]

NORMALIZATIONS = ("symmetric", "row", "none")
SPACES = ("encoder", "frozen", "nodes")
THRESHOLDS = ("hard", "soft")
INTERVENTION_MODES = ("learned", "random", "gaussian", "none")
ACTIVATIONS = ("gelu", "relu", "tanh", "none")
O_DISTANCES = ("prototype", "nearest")


def _choose(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{field} {value!r} is not known: choose one of {', '.join(choices)}")


@dataclass
class GraphConfig:
    """Multimodal graph construction (poster Eq. 2).

    Attributes:
        delta: the edge threshold of Eq. 2: an edge is kept where the cosine similarity of its two
            nodes is >= delta. Default 0.5 **(ours)**, chosen with ``space: encoder`` by the
            diagnostics and dev F1 (docs/models/mousing.md, "Why this graph"); in [-1, 1].
        space: where the similarity is measured **(ours)**. ``encoder``: in the space the
            modalities already share before any learned projection, as the poster measures it in
            CLIP's joint space: a word's state of the text encoder and a caption token's state of the
            caption encoder (the same text model, so one space), or CLIP's joint space with
            ``shared_space: clip``. ``nodes``: after the learned projections. Two independent
            random projections give cross-modal cosines of about N(0, 1/d): at d = 256 none reaches
            delta = 0.3, no word-visual edge ever forms and a hard threshold passes no gradient, so
            the image is ignored (measured on a trained checkpoint: 0 of 12,893 word-caption pairs).
            ``nodes`` therefore needs ``threshold: soft``. ``frozen`` (default): as ``encoder``, but the
            words' states come from the *frozen* copy of the text model (the caption encoder's, the same
            checkpoint), so the graph's structure does not drift while the text encoder is fine-tuned
            (fine-tuning made the word states more alike: 36 % of word-word pairs above 0.5 after two
            short epochs, 85 % after four full ones; with ``frozen``, 16 % on Twitter-2017 Per+Loc).
        threshold: ``hard`` (Eq. 2 as written: ``s`` where ``s >= delta``, else no edge) or ``soft``
            **(ours)**: every pair weighs ``s * sigmoid((s - delta) / sharpness)``, which passes
            gradients below delta (an edge still *counts* as kept where ``s >= delta``).
        sharpness: the temperature of the ``soft`` threshold **(ours)**, default 0.05; > 0.
        normalization: how an adjacency is normalised before message passing: ``symmetric``
            (D^-1/2 A D^-1/2, GCN-style, **ours**, default), ``row`` (D^-1 A) or ``none``.
        self_loops: give every real node a self-loop of weight 1 (**ours**, default True).
    """

    delta: float = 0.5
    space: str = "frozen"
    threshold: str = "hard"
    sharpness: float = 0.05
    normalization: str = "symmetric"
    self_loops: bool = True

    def __post_init__(self) -> None:
        if not -1.0 <= self.delta <= 1.0:
            raise ConfigError(
                f"delta = {self.delta}: the graph threshold is a cosine similarity and must be in "
                f"[-1, 1]; set delta in that range (default 0.5)"
            )
        _choose("space", self.space, SPACES)
        _choose("threshold", self.threshold, THRESHOLDS)
        if not self.sharpness > 0:
            raise ConfigError(f"sharpness = {self.sharpness}: the soft threshold's temperature must be > 0")
        _choose("normalization", self.normalization, NORMALIZATIONS)


@dataclass
class InterventionConfig:
    """Intervention graph generation of MCIS (poster Eq. 6, Eq. 7).

    Attributes:
        environments: V of Eq. 6, the number of intervened graphs (environments) simulated per
            tweet. Default 4 **(ours)**; must be >= 1.
        temperature: gamma of Eq. 7, the temperature of the relaxed-Bernoulli (binary Concrete)
            edge masks; near 0 the masks are near binary. Default 0.5 **(ours)**; must be > 0.
        mode: ``learned`` (MOUSING: masks sampled from a learned edge scorer), ``random``
            (w/ Random Intervention: masks drawn at random with the same keep rates, no scorer),
            ``gaussian`` (w/ Gaussian Intervention: Gaussian noise on the edge weights, no mask) or
            ``none`` (w/o Intervention: every environment is the original graph).
        keep_rate: r, the prior keep probability of an edge **(ours)**, default 0.7; in (0, 1).
            The ``learned`` scorer is pulled towards it by ``prior_weight`` (without a prior it
            learned to keep every edge: logits of 10 to 34, masks of 1, no intervention at all);
            the ``random`` mode draws masks at this rate.
        prior_weight: beta, the weight of the keep-rate prior: the mean over the kept edges of
            ``KL(Bernoulli(p_ij) || Bernoulli(r))`` (as GSAT, Miao et al. ICML 2022, regularises its
            stochastic edge attention) **(ours)**, default 1.0; >= 0 (0 = no prior).
        environment_spread: s, how much the environments differ **(ours)**, default 1.0; >= 0.
            Environment v shifts every edge logit by ``c_v``, the V values evenly spaced in
            ``[-s, s]`` (logit units; one environment, V = 1, is not shifted). The shift is shared
            by every tweet of an episode, support and query, so environment v is one intervention
            strength for the whole episode (with r = 0.7 and s = 1, V = 4 environments keep about
            46 %, 63 %, 77 % and 87 % of the edges) and the invariance term of Eq. 14 compares
            environments that really differ, not independent noise draws.
        rank: width r of the low-rank bilinear edge scorer **(ours)**, default 64; >= 1.
        noise_std: standard deviation of the ``gaussian`` mode's noise **(ours)**, default 0.1; >= 0.
        init_bias: initial bias of the edge scorer's logits **(ours)**; None (default) =
            ``logit(keep_rate)``, so that the first masks keep edges at the prior rate.
        seed: the ``random`` mode's draws outside training come from a generator seeded with this
            and the tweet's own word ids **(ours)**: a tweet gets the same masks whatever batch it
            is in, so evaluation is reproducible.
    """

    environments: int = 4
    temperature: float = 0.5
    mode: str = "learned"
    keep_rate: float = 0.7
    prior_weight: float = 1.0
    environment_spread: float = 1.0
    rank: int = 64
    noise_std: float = 0.1
    init_bias: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.environments < 1:
            raise ConfigError(
                f"environments = {self.environments}: V (Eq. 6) must be >= 1; use mode 'none' "
                f"for the w/o Intervention ablation"
            )
        if not self.temperature > 0:
            raise ConfigError(
                f"temperature = {self.temperature}: gamma (Eq. 7) must be > 0; use a small value "
                f"such as 0.1 for near-binary masks"
            )
        _choose("mode", self.mode, INTERVENTION_MODES)
        if not 0.0 < self.keep_rate < 1.0:
            raise ConfigError(f"keep_rate = {self.keep_rate}: the prior keep probability must be in (0, 1)")
        if self.prior_weight < 0:
            raise ConfigError(f"prior_weight = {self.prior_weight}: must be >= 0 (0 = no keep-rate prior)")
        if self.environment_spread < 0:
            raise ConfigError(f"environment_spread = {self.environment_spread}: must be >= 0")
        if self.rank < 1:
            raise ConfigError(f"rank = {self.rank}: the edge scorer's rank must be >= 1")
        if self.noise_std < 0:
            raise ConfigError(f"noise_std = {self.noise_std}: a standard deviation must be >= 0")

    @property
    def bias(self) -> float:
        """The scorer's initial bias: ``init_bias``, or ``logit(keep_rate)``."""
        if self.init_bias is not None:
            return float(self.init_bias)
        return math.log(self.keep_rate / (1.0 - self.keep_rate))


@dataclass
class UpdateConfig:
    """Multi-view graph updating of MCIS (poster Eq. 9).

    Attributes:
        layers: L of Eq. 9, the number of graph layers per view. Default 2 **(ours)**; >= 0
            (0 = no update: the views are the input nodes, the w/o MCIS ablation).
        dropout: dropout on each layer's update **(ours)**, default 0.1; in [0, 1).
        share_weights: the same layers for both views (**ours**, default) or separate ones.
        activation: the non-linearity of a layer: ``gelu`` (**ours**, default), ``relu``,
            ``tanh`` or ``none``.
    """

    layers: int = 2
    dropout: float = 0.1
    share_weights: bool = True
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.layers < 0:
            raise ConfigError(f"layers = {self.layers}: L (Eq. 9) must be >= 0 (0 = no graph update)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout = {self.dropout}: must be in [0, 1)")
        _choose("activation", self.activation, ACTIVATIONS)


@dataclass
class MOUSINGConfig(EpisodicConfig):
    """Every choice of a MOUSING model (the encoders: :class:`~mner.models.episodic.EpisodicConfig`).

    Attributes:
        no_image: "w/o Image": the graph holds word nodes only.
        visual_view: where the patch nodes come from: ``pixels`` (image regions, the poster's CLIP
            patches), ``caption`` (caption tokens, where the pixels are missing) or ``both``.
        hidden_dim: the shared width d of word and patch nodes (learned projections, ours).
        shared_space: ``learned`` (a learned projection per side, for encoders without a joint
            space: the offline ones) or ``clip`` (the poster's: CLIP's own heads map the words of its
            text tower and the patches of its vision tower into its joint space; needs a CLIP
            checkpoint as text and image encoder and the pixels view; ``hidden_dim`` is then CLIP's
            projection width and the casing feature is not used).
        clip_model: the CLIP checkpoint whose heads ``clip`` uses; None = ``image_encoder.name``.
        graph, intervention, update: the three graph modules (Eq. 2; Eq. 6-7; Eq. 9).
        invariance_weight: lambda of Eq. 14 (ours: the variance of the per-environment tagging
            losses; 0 switches the term off).
        learn_transitions: learn the decoder's label-agnostic CRF transitions on the source
            episodes (else only the IOB2 constraints).
        no_intervention: "w/o Intervention": no masks (every environment is G1); the two views, the
            loss terms and the invariance term stay.
        no_multiview: "w/o Multi-view": only the intervened view G2 is updated, trained and decoded.
        no_mcis: "w/o MCIS": the multimodal graph G1 is kept and updated (the image still reaches the
            words); no intervention and no second view.
        transition_scale: decoding only **(ours)**: tau, multiplying the learned abstract transition
            scores at decoding (StructShot's tau as a power of the transition potentials, without its
            row renormalisation; :mod:`~mner.models.mousing.prototype_crf`); 1 (default) = as trained,
            0 = only the IOB2 constraints; >= 0. Never applied to the training loss.
        o_distance: decoding only **(ours)**: how the O column of the query emissions is scored:
            ``prototype`` (the poster's: the distance to the mean of the O support words, what the
            loss trains) or ``nearest`` (the mean distance to the ``o_neighbours`` nearest O support
            words; the entity classes keep their prototypes; :meth:`PrototypeCRF.o_neighbour_emissions
            <mner.models.mousing.prototype_crf.PrototypeCRF.o_neighbour_emissions>`). Never applied to
            the training loss. Default ``nearest`` for new checkpoints: chosen on the dev episodes of
            the six Twitter-2017 K = 5 checkpoints, where it raised dev F1 on every split (mean 38.04 ->
            43.00 at k = 2; docs/results/mousing-precision.md). A checkpoint saved before the field
            existed loads as ``prototype``, the decoder it was scored with
            (:meth:`~mner.models.mousing.modeling_mousing.MOUSINGModel.upgrade_config`).
        o_neighbours: k of ``o_distance: nearest``, default 2 (chosen with it on dev); >= 1.

    Every variant keeps the scale of the tagging loss: a variant with one view counts its
    ``CE(D(P|G), y)`` twice, as the full model counts its two views, so that no ablation changes the
    effective learning rate.
    """

    no_image: bool = False
    hidden_dim: int = 256
    shared_space: str = "learned"
    clip_model: str | None = None
    graph: GraphConfig = field(default_factory=GraphConfig)
    intervention: InterventionConfig = field(default_factory=InterventionConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    invariance_weight: float = 0.1
    learn_transitions: bool = True
    no_intervention: bool = False
    no_multiview: bool = False
    no_mcis: bool = False
    transition_scale: float = 1.0
    o_distance: str = "nearest"
    o_neighbours: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.transition_scale) and self.transition_scale >= 0):
            raise ConfigError(f"transition_scale = {self.transition_scale}: tau must be a finite number >= 0 "
                              f"(1 = the transitions as trained, 0 = only the IOB2 constraints)")
        _choose("o_distance", self.o_distance, O_DISTANCES)
        if self.o_neighbours < 1:
            raise ConfigError(f"o_neighbours = {self.o_neighbours}: k must be >= 1 (1 = the nearest O support word)")
        if self.hidden_dim < 1:
            raise ConfigError(f"hidden_dim must be >= 1, got {self.hidden_dim}")
        if self.invariance_weight < 0:
            raise ConfigError(f"invariance_weight (lambda) must be >= 0, got {self.invariance_weight}")
        _choose("shared_space", self.shared_space, ("learned", "clip"))
        if self.shared_space == "clip" and not self.no_image and self.visual_view != "pixels":
            raise ConfigError(f"shared_space clip reads image patches: set visual_view: pixels (got "
                              f"{self.visual_view!r}), or use shared_space learned for captions")
        if (self.shared_space == "learned" and self.graph.space in ("encoder", "frozen") and not self.no_image
                and self.visual_view != "caption"):
            raise ConfigError(
                f"graph.space encoder measures the similarities where words and visual tokens share a space "
                f"before any learned projection; with shared_space learned only the caption view has one (the "
                f"caption tokens are states of a text model), not visual_view {self.visual_view!r}: use "
                f"visual_view: caption, shared_space: clip for image patches, or graph: {{space: nodes, "
                f"threshold: soft}}")
        if (self.graph.space == "frozen" and self.shared_space == "learned" and not self.no_image
                and self.caption_encoder.name != self.text_encoder.name):
            raise ConfigError(
                f"graph.space frozen reads the words with the caption encoder's frozen text model, which must "
                f"be the text encoder's checkpoint: caption_encoder.name {self.caption_encoder.name!r} is not "
                f"text_encoder.name {self.text_encoder.name!r}")

    @property
    def variant(self) -> str:
        """The poster's name of this configuration."""
        names = []
        if self.no_image:
            names.append("w/o Image")
        if self.no_mcis:
            names.append("w/o MCIS")
        else:
            if self.no_intervention:
                names.append("w/o Intervention")
            elif self.intervention.mode == "random":
                names.append("w/ Random Intervention")
            elif self.intervention.mode == "gaussian":
                names.append("w/ Gaussian Intervention")
            elif self.intervention.mode == "none":
                names.append("w/o Intervention")
            if self.no_multiview:
                names.append("w/o Multi-view")
        return "MOUSING" + (" " + ", ".join(names) if names else "")
