"""MAF (Xu et al., WSDM 2023), one file per module of the paper:

- :mod:`.cross_modal_interaction`: CI, the cross-attention block;
- :mod:`.cross_modal_matching`: CM, negatives, match classifier, ``L_cm``;
- :mod:`.cross_modal_alignment`: CA, MLP projections and the symmetric InfoNCE ``L_ca``;
- :mod:`.fusion_gate`: the token-level gate ``H = [T; g * M]``;
- the CRF decoder is shared by all models: :mod:`mner.crf`;
- :mod:`.modeling_maf`: the model, wiring them together; :mod:`.config`: its config.
"""

from mner.models.maf.config import MAFConfig
from mner.models.maf.modeling_maf import MAFModel

__all__ = ["MAFConfig", "MAFModel"]
