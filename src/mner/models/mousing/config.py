"""The configuration of MOUSING's graph modules (poster: Eq. 2 delta, Eq. 6 V, Eq. 7 gamma, Eq. 9 L).

The poster names these hyperparameters and plots F1 against them (its Figure 4) but prints no
value, so every default below is **(ours)**: a starting point to tune on the dev episodes.
A value out of range raises :class:`mner.config.ConfigError` (an :class:`mner.errors.MNERError`)
naming the field; read through :func:`mner.config.from_dict` the message also carries the
dotted config path.
"""

from __future__ import annotations

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
    "UpdateConfig",
]

NORMALIZATIONS = ("symmetric", "row", "none")
INTERVENTION_MODES = ("learned", "random", "gaussian", "none")
ACTIVATIONS = ("gelu", "relu", "tanh", "none")


def _choose(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{field} {value!r} is not known: choose one of {', '.join(choices)}")


@dataclass
class GraphConfig:
    """Multimodal graph construction (poster Eq. 2).

    Attributes:
        delta: the edge threshold of Eq. 2: an edge is kept where the cosine similarity of its two
            nodes is >= delta. Default 0.3 **(ours)**; must be in [-1, 1].
        normalization: how an adjacency is normalised before message passing: ``symmetric``
            (D^-1/2 A D^-1/2, GCN-style, **ours**, default), ``row`` (D^-1 A) or ``none``.
        self_loops: give every real node a self-loop of weight 1 (**ours**, default True).
    """

    delta: float = 0.3
    normalization: str = "symmetric"
    self_loops: bool = True

    def __post_init__(self) -> None:
        if not -1.0 <= self.delta <= 1.0:
            raise ConfigError(
                f"delta = {self.delta}: the graph threshold is a cosine similarity and must be in "
                f"[-1, 1]; set delta in that range (default 0.3)"
            )
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
            (w/ Random Intervention: uniform random masks), ``gaussian`` (w/ Gaussian
            Intervention: Gaussian noise on the edge weights, no mask) or ``none``
            (w/o Intervention: every environment is the original graph).
        rank: width r of the low-rank bilinear edge scorer **(ours)**, default 64; >= 1.
        noise_std: standard deviation of the ``gaussian`` mode's noise **(ours)**, default 0.1; >= 0.
        init_bias: initial bias of the edge scorer's logits **(ours)**, default 2.0, so that the
            first masks keep most edges (sigmoid(2) ~ 0.88).
    """

    environments: int = 4
    temperature: float = 0.5
    mode: str = "learned"
    rank: int = 64
    noise_std: float = 0.1
    init_bias: float = 2.0

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
        if self.rank < 1:
            raise ConfigError(f"rank = {self.rank}: the edge scorer's rank must be >= 1")
        if self.noise_std < 0:
            raise ConfigError(f"noise_std = {self.noise_std}: a standard deviation must be >= 0")


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
        no_intervention: "w/o Intervention": G2 = G1 (masks of ones).
        no_multiview: "w/o Multi-view": only the intervened view G2 is updated and decoded.
        no_mcis: "w/o MCIS": no graph update at all; the prototypes read the projected words.
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_dim < 1:
            raise ConfigError(f"hidden_dim must be >= 1, got {self.hidden_dim}")
        if self.invariance_weight < 0:
            raise ConfigError(f"invariance_weight (lambda) must be >= 0, got {self.invariance_weight}")
        _choose("shared_space", self.shared_space, ("learned", "clip"))
        if self.shared_space == "clip" and not self.no_image and self.visual_view != "pixels":
            raise ConfigError(f"shared_space clip reads image patches: set visual_view: pixels (got "
                              f"{self.visual_view!r}), or use shared_space learned for captions")

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
