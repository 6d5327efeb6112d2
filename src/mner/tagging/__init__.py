"""Tagging layer: tag schemes, tags -> entity spans, and entity-level metrics.

The last step of the data flow (model -> tags -> entity spans). Nothing here imports the
data or model layers.
"""

from mner.tagging.metrics import EntityReport, Scores, score
from mner.tagging.schemes import (
    MODES,
    SCHEMES,
    Span,
    convert_tags,
    entity_types,
    get_spans,
    normalize_scheme,
    orphan_positions,
    parse_tag,
    spans_to_tags,
    tag_problems,
    with_char_offsets,
)

__all__ = [
    "MODES",
    "SCHEMES",
    "EntityReport",
    "Scores",
    "Span",
    "convert_tags",
    "entity_types",
    "get_spans",
    "normalize_scheme",
    "orphan_positions",
    "parse_tag",
    "score",
    "spans_to_tags",
    "tag_problems",
    "with_char_offsets",
]
