"""Multi-view graph updating of MCIS, MOUSING poster "Multimodal causal intervention strategy",
Eq. 9 (L layers).

The poster updates the node representations on two views, G1 (the original similarity graph,
Eq. 2) and G2 (the intervened graphs, Eq. 6-7), and tags with both (``L_CRF = CE(D(P|G1), y) +
CE(D(P|G2), y)``). Its layer is not printed; ours is a residual graph convolution **(ours)**::

    h^(l+1) = LayerNorm(h^(l) + dropout(act(W (A h^(l)) + b)))                  (Eq. 9, L layers)

with padded nodes set to 0 after every layer. On G2 the message of every environment v is
computed and AVERAGED over the V environments at every layer **(ours, a backdoor-adjustment
style average)**::

    m = 1/V sum_v A^v h  =  (1/V sum_v A^v) h

(computed as the right-hand side: the mean adjacency times h, one product instead of V). With
``per_environment=True`` the layers also run over each environment's graph separately, giving
``(B, V, N, d)`` representations for the invariance term weighted by lambda in Eq. 14
(docs/mousing.md, 4.). Both views use the same layers by default (``share_weights``, ours).
L = 0 is the identity (the views are the input nodes, padded nodes 0): the w/o MCIS ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mner.models.mousing.config import ACTIVATIONS, UpdateConfig

__all__ = ["GraphLayer", "MultiViewOut", "MultiViewUpdate"]


def _activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"activation {name!r} is not known: choose one of {', '.join(ACTIVATIONS)}")


class GraphLayer(nn.Module):
    """One residual graph convolution ``h' = LayerNorm(h + dropout(act(W (A h) + b)))`` (ours).

    ``forward(h, adj, node_mask)`` accepts:

    - ``h (B, N, d)``, ``adj (B, N, N)``: one graph per tweet -> ``(B, N, d)``;
    - ``h (B, N, d)``, ``adj (B, V, N, N)``: the messages of the V environments are averaged
      (``mean_v A^v h``) -> ``(B, N, d)``;
    - ``h (B, V, N, d)``, ``adj (B, V, N, N)``: each environment propagates its own
      representations -> ``(B, V, N, d)``.

    ``node_mask (B, N)`` bool; the output is 0 on padded nodes.
    """

    def __init__(self, dim: int, dropout: float = 0.1, activation: str = "gelu"):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.activation = _activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def messages(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """``A h`` for the three shape cases of the class docstring."""
        if adj.dim() == 4 and h.dim() == 3:
            return adj.mean(dim=1) @ h        # = mean_v (A^v h): the product is linear
        if adj.dim() != h.dim():
            raise ValueError(f"adjacency {tuple(adj.shape)} does not fit node features {tuple(h.shape)}")
        return adj @ h

    def forward(self, h: torch.Tensor, adj: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        update = self.dropout(self.activation(self.linear(self.messages(h, adj))))
        out = self.norm(h + update)
        mask = node_mask.bool()
        if out.dim() == 4:
            mask = mask.unsqueeze(1)
        return out.masked_fill(~mask.unsqueeze(-1), 0.0)


@dataclass
class MultiViewOut:
    """The updated node representations of the two views.

    Attributes:
        view1: ``(B, N, d)`` after L layers over G1.
        view2: ``(B, N, d)`` after L layers over G2 (messages averaged over V); None when no
            ``view2_adj`` was given.
        environments: ``(B, V, N, d)`` after L layers over each environment separately
            (``per_environment=True``), else None.
    """

    view1: torch.Tensor
    view2: torch.Tensor | None = None
    environments: torch.Tensor | None = None


class MultiViewUpdate(nn.Module):
    """L residual graph layers (Eq. 9) over G1 and over G2; see the module docstring.

    Args:
        dim: node feature width d.
        layers: L (Eq. 9); 0 = identity.
        dropout, activation: of every :class:`GraphLayer`.
        share_weights: one stack of layers for both views (ours, default) or one per view.
    """

    def __init__(
        self, dim: int, layers: int, dropout: float = 0.1, share_weights: bool = True, activation: str = "gelu"
    ):
        super().__init__()
        UpdateConfig(layers, dropout, share_weights, activation)  # range checks
        self.share_weights = share_weights
        self.view1_layers = nn.ModuleList(GraphLayer(dim, dropout, activation) for _ in range(layers))
        # a shared stack is registered once: safetensors refuses two names for one tensor
        self.view2_layers = (
            None if share_weights else nn.ModuleList(GraphLayer(dim, dropout, activation) for _ in range(layers))
        )

    @classmethod
    def from_config(cls, cfg: UpdateConfig, dim: int) -> MultiViewUpdate:
        return cls(dim, cfg.layers, cfg.dropout, cfg.share_weights, cfg.activation)

    @property
    def num_layers(self) -> int:
        return len(self.view1_layers)

    def _stack(
        self, stack: nn.ModuleList, h: torch.Tensor, adj: torch.Tensor, node_mask: torch.Tensor
    ) -> torch.Tensor:
        mask = node_mask if h.dim() == 3 else node_mask.unsqueeze(1)
        h = h.masked_fill(~mask.unsqueeze(-1), 0.0)
        for layer in stack:
            h = layer(h, adj, node_mask)
        return h

    def forward(
        self,
        nodes: torch.Tensor,
        node_mask: torch.Tensor,
        view1_adj: torch.Tensor,
        view2_adj: torch.Tensor | None = None,
        per_environment: bool = False,
    ) -> MultiViewOut:
        """``nodes (B, N, d)``, ``node_mask (B, N)``, ``view1_adj (B, N, N)`` normalised G1,
        ``view2_adj (B, V, N, N)`` normalised G2 (or ``(B, N, N)``) -> :class:`MultiViewOut`."""
        node_mask = node_mask.bool()
        view1 = self._stack(self.view1_layers, nodes, view1_adj, node_mask)
        if view2_adj is None:
            if per_environment:
                raise ValueError("per_environment=True needs view2_adj, the (B, V, N, N) environment graphs")
            return MultiViewOut(view1=view1)
        stack2 = self.view1_layers if self.view2_layers is None else self.view2_layers
        view2 = self._stack(stack2, nodes, view2_adj, node_mask)
        environments = None
        if per_environment:
            if view2_adj.dim() != 4:
                raise ValueError(
                    f"per_environment=True needs (B, V, N, N) view2_adj, got {tuple(view2_adj.shape)}"
                )
            expanded = nodes.unsqueeze(1).expand(-1, view2_adj.shape[1], -1, -1)
            environments = self._stack(stack2, expanded, view2_adj, node_mask)
        return MultiViewOut(view1=view1, view2=view2, environments=environments)
