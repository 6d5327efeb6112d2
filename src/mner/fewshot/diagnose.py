"""Does a trained MOUSING act as its poster says? Diagnostics on the episodes it is scored on.

A module is not done when it exists: each figure below would read 0 (or "identical") if its
module were a no-op, and a trained model was once exactly that (no word-caption edge formed; the
intervention kept every edge; shuffling the captions changed nothing). ``mner fewshot diagnose
CKPT EPISODES`` prints them; the benchmark stores them with every MOUSING cell.

- **Graph (Eq. 2)**, over the distinct tweets of the episodes, at evaluation: the share of
  word-visual pairs that are edges, the share of tweets with at least one word-visual edge, and the
  share of word-word pairs that are edges.
- **Masks (Eq. 6-7)**, over the off-diagonal edges of G1: mean mask and share of edges with a mask
  below 0.5, at evaluation (the deterministic masks decoding uses) and in training mode (sampled,
  seeded), per environment; and the standard deviation of an edge's mask across environments.
- **Views (Eq. 9)**: the share of query words tagged the same when decoding view G1 alone, view
  G2 alone and their average (what the model decodes).
- **Captions (controls)**: the pooled F1 with the real captions, with the captions shuffled among
  the distinct tweets (seeded), and with no caption at all.

Only the ``caption`` controls apply to every few-shot model; graph, masks and views need a MOUSING.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from mner.data.episodes import Episode
from mner.fewshot.evaluation import _key, predict_episodes, score_episodes

__all__ = ["diagnose", "format_diagnostics", "shuffle_captions"]


def _distinct(episodes: Sequence[Episode]) -> list:
    seen: dict = {}
    for ep in episodes:
        for ex in ep.support + ep.query:
            seen.setdefault(_key(ex), ex)
    return list(seen.values())


def shuffle_captions(episodes: Sequence[Episode], seed: int = 0, drop: bool = False) -> tuple[list[Episode], int]:
    """The episodes with every distinct tweet's caption replaced by another tweet's (a seeded
    permutation of the captions of the distinct tweets), or removed (``drop``). Returns the new
    episodes and how many distinct tweets kept their own caption text."""
    tweets = _distinct(episodes)
    captions = [ex.caption for ex in tweets]
    order = list(range(len(tweets)))
    random.Random(seed).shuffle(order)
    new = {}
    same = 0
    for i, ex in enumerate(tweets):
        cap = None if drop else captions[order[i]]
        same += cap == ex.caption
        new[_key(ex)] = cap
    out = [replace(ep, support=tuple(ex.replace(caption=new[_key(ex)]) for ex in ep.support),
                   query=tuple(ex.replace(caption=new[_key(ex)]) for ex in ep.query)) for ep in episodes]
    return out, same


@dataclass
class _Acc:
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def __getitem__(self, name: str) -> float:
        return self.sums.get(name, 0.0)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


@torch.no_grad()
def _graph_stats(model, tweets: list, processor, batch_size: int, train_mode: bool, seed: int) -> dict[str, Any]:
    acc = _Acc()
    env_sums: list[float] = []
    was = model.training
    model.train(train_mode)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(tweets), batch_size):
                chunk = tweets[start:start + batch_size]
                part = processor.tagging(chunk)
                views = model.graph_views(part, train=False)
                if views.graph is None:
                    continue
                mask = views.node_mask
                N, w = mask.shape[1], views.num_words
                eye = torch.eye(N, dtype=torch.bool)
                pairs = (mask.unsqueeze(-1) & mask.unsqueeze(-2)) & ~eye
                is_word = torch.zeros(N, dtype=torch.bool)
                is_word[:w] = True
                ww = pairs & is_word[:, None] & is_word[None, :]
                wv = pairs & is_word[:, None] & ~is_word[None, :]
                edges = views.graph.edges & ~eye
                acc.add("ww_pairs", ww.sum() / 2)
                acc.add("ww_edges", (edges & ww).sum() / 2)
                acc.add("wv_pairs", wv.sum())
                acc.add("wv_edges", (edges & wv).sum())
                has_visual = (mask & ~is_word[None, :]).any(-1)
                acc.add("tweets", len(chunk))
                acc.add("tweets_visual", has_visual.sum())
                acc.add("tweets_wv_edge", (edges & wv).flatten(1).any(-1).sum())
                sim = views.graph.similarity
                if sim is not None and bool(wv.any()):
                    acc.add("wv_sim_max_sum", sim.masked_fill(~wv, -2.0).flatten(1).amax(-1)[has_visual].sum())
                interv = views.intervention
                if interv is None or interv.masks is None:
                    continue
                m = interv.masks                                            # (B, V, N, N)
                off = edges.unsqueeze(1).expand_as(m)
                acc.add("mask_n", off.sum())
                acc.add("mask_sum", m[off].sum())
                acc.add("mask_below", (m[off] < 0.5).sum())
                wv_off = (edges & wv).unsqueeze(1).expand_as(m)
                acc.add("wv_mask_n", wv_off.sum())
                acc.add("wv_mask_sum", m[wv_off].sum())
                acc.add("env_std_sum", m.std(dim=1, unbiased=False)[edges].sum() if m.shape[1] > 1 else 0.0)
                acc.add("env_std_n", edges.sum())
                per_env = [(m[:, v][edges].sum().item()) for v in range(m.shape[1])]
                env_sums = [a + b for a, b in zip(env_sums, per_env)] if env_sums else per_env
    finally:
        model.train(was)
    out: dict[str, Any] = {
        "tweets": int(acc["tweets"]),
        "tweets_with_visual_nodes": int(acc["tweets_visual"]),
        "word_visual_pairs": int(acc["wv_pairs"]),
        "word_visual_edges": int(acc["wv_edges"]),
        "word_visual_edge_share": _ratio(acc["wv_edges"], acc["wv_pairs"]),
        "tweets_with_word_visual_edge": _ratio(acc["tweets_wv_edge"], acc["tweets_visual"]),
        "word_word_edge_share": _ratio(acc["ww_edges"], acc["ww_pairs"]),
        "mean_max_word_visual_similarity": _ratio(acc["wv_sim_max_sum"], acc["tweets_visual"]),
    }
    if acc["mask_n"]:
        out.update({
            "mask_mean": acc["mask_sum"] / acc["mask_n"],
            "mask_below_half": acc["mask_below"] / acc["mask_n"],
            "word_visual_mask_mean": _ratio(acc["wv_mask_sum"], acc["wv_mask_n"]),
            "mask_std_across_environments": _ratio(acc["env_std_sum"], acc["env_std_n"]),
            "mask_mean_per_environment": [v / acc["env_std_n"] for v in env_sums],
        })
    return out


def _view_head(model, which: int):
    """``model.head`` decoding one view: both slots of the tuple carry view ``which`` (0: G1, 1: G2)."""
    def head(batch, support, query):
        s, q = support[which], query[which]
        return model.head(batch, (s, s, None), (q, q, None))
    return head


def _agreement(a: list, b: list) -> float:
    same = total = 0
    for ea, eb in zip(a, b):
        for ta, tb in zip(ea, eb):
            same += sum(x == y for x, y in zip(ta, tb))
            total += len(ta)
    return same / total if total else 1.0


def diagnose(model, episodes: Sequence[Episode], processor=None, batch_size: int = 8, seed: int = 0,
             captions: bool = True, encoded: dict | None = None) -> dict[str, Any]:
    """Every figure of the module docstring for ``model`` on ``episodes`` (a dict, JSON-ready).
    ``encoded``: the rows of this model's earlier decodings of the same episodes
    (:func:`~mner.fewshot.evaluation.predict_episodes`), reused by the decodings of the real
    episodes (not by those with their captions shuffled or removed)."""
    processor = processor or model.processor()
    out: dict[str, Any] = {"episodes": len(episodes), "model_type": model.model_type,
                           "variant": getattr(model.config, "variant", model.model_type)}
    preds = predict_episodes(model, episodes, processor, batch_size, encoded=encoded)
    real = score_episodes(episodes, preds)
    out["f1"] = real.micro.f1
    if hasattr(model, "graph_views"):
        tweets = _distinct(episodes)
        out["graph"] = _graph_stats(model, tweets, processor, 32, train_mode=False, seed=seed)
        train = _graph_stats(model, tweets, processor, 32, train_mode=True, seed=seed)
        out["train_masks"] = {k: v for k, v in train.items() if "mask" in k}
        if not model.one_view:
            v1 = predict_episodes(model, episodes, processor, batch_size, head=_view_head(model, 0), encoded=encoded)
            v2 = predict_episodes(model, episodes, processor, batch_size, head=_view_head(model, 1), encoded=encoded)
            out["views"] = {"g1_vs_g2": _agreement(v1.tags, v2.tags), "g1_vs_decoded": _agreement(v1.tags, preds.tags),
                            "g2_vs_decoded": _agreement(v2.tags, preds.tags),
                            "f1_g1": score_episodes(episodes, v1).micro.f1,
                            "f1_g2": score_episodes(episodes, v2).micro.f1}
    if captions and "caption" in getattr(processor, "views", ()):
        shuffled, same = shuffle_captions(episodes, seed)
        dropped, _ = shuffle_captions(episodes, seed, drop=True)
        s_preds = predict_episodes(model, shuffled, processor, batch_size)
        d_preds = predict_episodes(model, dropped, processor, batch_size)
        out["captions"] = {"f1_real": real.micro.f1, "f1_shuffled": score_episodes(shuffled, s_preds).micro.f1,
                           "f1_none": score_episodes(dropped, d_preds).micro.f1,
                           "tags_changed_by_shuffling": 1.0 - _agreement(preds.tags, s_preds.tags),
                           "tweets_keeping_their_caption": same, "tweets": len(_distinct(episodes))}
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def format_diagnostics(d: dict[str, Any]) -> str:
    """The diagnostics as readable lines."""
    lines = [f"{d['variant']} on {d['episodes']} episodes: F1 {100 * d['f1']:.2f}"]
    g = d.get("graph")
    if g:
        lines.append(f"graph (Eq. 2): word-visual pairs that are edges {_pct(g['word_visual_edge_share'])} "
                     f"({g['word_visual_edges']} of {g['word_visual_pairs']}); tweets with a word-visual edge "
                     f"{_pct(g['tweets_with_word_visual_edge'])}; word-word pairs that are edges "
                     f"{_pct(g['word_word_edge_share'])}")
        for name, stats in (("at evaluation", g), ("in training", d.get("train_masks") or {})):
            if "mask_mean" in stats:
                per_env = ", ".join(f"{v:.3f}" for v in stats["mask_mean_per_environment"])
                wv = stats.get("word_visual_mask_mean")
                lines.append(f"masks {name} (Eq. 6-7): mean {stats['mask_mean']:.3f}, below 0.5 "
                             f"{_pct(stats['mask_below_half'])}, word-visual mean {'-' if wv is None else f'{wv:.3f}'}, "
                             f"std across environments {stats['mask_std_across_environments']:.3f}; per environment {per_env}")
    v = d.get("views")
    if v:
        lines.append(f"views (Eq. 9): query words tagged alike by G1 and G2 {_pct(v['g1_vs_g2'])}; "
                     f"F1 of G1 alone {100 * v['f1_g1']:.2f}, G2 alone {100 * v['f1_g2']:.2f}")
    c = d.get("captions")
    if c:
        lines.append(f"captions: F1 real {100 * c['f1_real']:.2f}, shuffled {100 * c['f1_shuffled']:.2f}, none "
                     f"{100 * c['f1_none']:.2f}; query tags changed by shuffling {_pct(c['tags_changed_by_shuffling'])} "
                     f"({c['tweets_keeping_their_caption']} of {c['tweets']} tweets kept their caption)")
    return "\n".join(lines)
