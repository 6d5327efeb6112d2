"""Why MAF's cross-modal matching module (CM) does not learn to match: the measurements of
``docs/results/maf-notes.md`` (section *Why CM does not learn (measured)*), one subcommand each.
The controls themselves (F1 with real / shuffled / no views, CM's AUC) are ``mner evaluate
CHECKPOINT DATA --controls``; this script measures the rest.

    # the captions: repeats, near-duplicates, and how well a frozen MiniLM matches a tweet to its caption
    .venv/bin/python bench/maf_cm_diagnostics.py captions --corpus ../shared/data/twitter2017
    # a trained run (a folder of `mner train`): CM on its own training negatives, and the gradient
    # that L_mner and L_cm send into the match logits and into CM's inputs
    .venv/bin/python bench/maf_cm_diagnostics.py gradients RUN_DIR --batches 20
    # a trained run: is the match in what CM reads? logistic probes on its pooled input, fit on the
    # train split's real vs shuffled pairs, scored on the test split
    .venv/bin/python bench/maf_cm_diagnostics.py probes RUN_DIR

Each prints one JSON object. One torch thread (``--threads``); every draw is seeded (the shuffled
pairs are :func:`mner.controls.shuffle_views` with seed 0, the training batches a seeded loader).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path

# words a caption shares with almost any tweet or caption: not evidence of a match
STOP = set("a an the of on in at with and to is are for his her their its by from two three people man men "
           "woman women group".split())


def _load_run(run: Path):
    """A `mner train` run's experiment, best model, prepared data and processor (features as training made them)."""
    from mner.data.prepare import prepare_data
    from mner.encoders.cache import feature_cache
    from mner.experiment import load_experiment
    from mner.models import load_model

    cfg = load_experiment(json.loads((run / "experiment.json").read_text()))
    model = load_model(run / "best")
    views = model.views
    data = prepare_data(cfg.data, needs_images="pixels" in views, needs_captions="caption" in views,
                        log=lambda *_: None)
    processor = model.processor(data.image_store, feature_cache(cfg.data.feature_cache), 0)
    return cfg, model, data, processor


def captions(corpus: Path, captions_file: str) -> dict:
    """Caption repeats and genericity per split, and a training-free matcher: the cosine of the
    frozen MiniLM's mean-pooled tweet text and caption (real pairs against one seeded shuffle),
    and a logistic probe on those frozen vectors (fit on train, AUC on test)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from mner.controls import rank_auc
    from mner.data.prepare import DataConfig, prepare_data
    from mner.encoders.caption import CaptionEncoder, CaptionEncoderConfig

    data = prepare_data(DataConfig(corpus=str(corpus), type_map="OTHER=MISC", captions=captions_file,
                                   feature_cache=None), needs_captions=True, log=lambda *_: None)
    enc = CaptionEncoder(CaptionEncoderConfig(name="minilm")).eval()

    def embed(texts):
        out = []
        for i in range(0, len(texts), 64):
            with torch.no_grad():
                f = enc(texts[i:i + 64])
            out.append(torch.nn.functional.normalize(f.pooled.float(), dim=-1))
        return torch.cat(out)

    res: dict = {}
    emb = {}
    for split in ("train", "test"):
        exs = [e for e in data.splits[split] if e.caption is not None]
        caps = [e.caption for e in exs]
        texts = [" ".join(e.tokens) for e in exs]
        n = len(exs)
        counts: dict[str, int] = {}
        for c in caps:
            counts[c] = counts.get(c, 0) + 1
        C, T = embed(caps), embed(texts)
        perm = list(range(n))
        random.Random(0).shuffle(perm)
        real = (C * T).sum(-1)
        shuf = (C[perm] * T).sum(-1)
        keep = [i for i in range(n) if caps[perm[i]] != caps[i]]
        sim_cc = C @ C.T
        iu = torch.triu_indices(n, n, 1)
        cc_pairs = sim_cc[iu[0], iu[1]]
        sim_cc.fill_diagonal_(-2)
        s_tc = T @ C.T
        own_rank = (s_tc > s_tc.diag()[:, None]).sum(1).float()

        def overlap(i, j):
            cw = {w for w in caps[j].split() if w not in STOP and len(w) > 2}
            return bool(cw & {w.lower().lstrip("#@") for w in exs[i].tokens})

        res[split] = {
            "tweets": n, "distinct_captions": len(counts),
            "tweets_whose_caption_text_another_has": sum(counts[c] > 1 for c in caps),
            "p_two_random_tweets_same_caption": sum(k * (k - 1) for k in counts.values()) / (n * (n - 1)),
            "share_with_a_near_duplicate_caption_cos_gt_0.9": (sim_cc.max(1).values > 0.9).float().mean().item(),
            "caption_caption_cos_random_pairs_mean": cc_pairs.mean().item(),
            "caption_caption_cos_share_gt_0.8": (cc_pairs > 0.8).float().mean().item(),
            "text_caption_cos_real_mean": real.mean().item(), "text_caption_cos_shuffled_mean": shuf.mean().item(),
            "cosine_auc_real_vs_shuffled": rank_auc([real[i].item() for i in keep], [shuf[i].item() for i in keep]),
            "own_caption_closest_of_all_share": (s_tc.argmax(1) == torch.arange(n)).float().mean().item(),
            "own_caption_median_rank_of_n": own_rank.median().item() + 1,
            "word_overlap_real": statistics.fmean(overlap(i, i) for i in range(n)),
            "word_overlap_shuffled": statistics.fmean(overlap(i, perm[i]) for i in range(n)),
            "top_captions": sorted(counts.items(), key=lambda kv: -kv[1])[:5],
        }
        emb[split] = (T, C, perm)

    def feats(T, C):
        return torch.cat([T * C, (T - C).abs()], -1).numpy()

    (ttr, ctr, ptr), (tte, cte, pte) = emb["train"], emb["test"]
    X = torch.cat([torch.tensor(feats(ttr, ctr)), torch.tensor(feats(ttr, ctr[ptr]))]).numpy()
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(X, [1] * len(ptr) + [0] * len(ptr))
    res["probe_logreg_on_frozen_pooled_test_auc"] = rank_auc(list(clf.decision_function(feats(tte, cte))),
                                                             list(clf.decision_function(feats(tte, cte[pte]))))
    return res


def gradients(run: Path, batches: int) -> dict:
    """CM on its own training pairs (train mode, the model's own negatives: in-sample AUC of kept
    vs swapped pairs) and, on the same batches, the gradient of each loss term (weighted as in the
    run's loss) on the match logits and into CM's inputs, by module (gradient norms)."""
    import torch
    from torch.utils.data import DataLoader

    from mner.controls import rank_auc

    cfg, model, data, proc = _load_run(run)
    loader = DataLoader(data.splits["train"], batch_size=cfg.training.batch_size, shuffle=True,
                        collate_fn=proc.collate(train=True), generator=torch.Generator().manual_seed(0))
    cap: dict = {}
    model.matching.register_forward_hook(lambda m, a, out: cap.__setitem__("logits", out))
    model.matching_loss.register_forward_pre_hook(lambda m, a: cap.__setitem__("labels", a[1].detach()))
    groups = ("matching", "interaction", "visual_proj", "text_proj", "text_encoder", "fusion")
    alpha, beta = model.config.alpha, model.config.beta
    w_mner, w_cm = 1 - alpha - beta, beta
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    pos, neg, g_mner_neg, g_cm_neg, g_mner_pos, g_cm_pos = [], [], [], [], [], []
    norms: dict = {"mner": {k: [] for k in groups}, "cm": {k: [] for k in groups}}
    model.train()
    for b, batch in enumerate(loader):
        if b >= batches:
            break
        got = {}
        # L = (1 - a - b) L_mner + a L_ca + b L_cm is linear in the weights: with (a, b) = (0, 0) the
        # gradient is L_mner's, with (0, 0.5) half L_mner's plus half L_cm's; the same negatives and
        # dropout in both passes (the same seed)
        for name, (a, bb) in (("mner", (0.0, 0.0)), ("half", (0.0, 0.5))):
            model.config.alpha, model.config.beta = a, bb
            torch.manual_seed(1000 + b)
            out = model(batch)
            gl, *gp = torch.autograd.grad(out.loss, [cap["logits"]] + list(params.values()), allow_unused=True)
            got[name] = (gl.detach(), dict(zip(params, gp)), cap["logits"].detach(), cap["labels"])
        model.config.alpha, model.config.beta = alpha, beta
        gl_m, gp_m, logits, labels = got["mner"]
        gl_h, gp_h, _, _ = got["half"]
        gl_c = 2 * gl_h - gl_m
        pos += logits[labels == 1].tolist()
        neg += logits[labels == 0].tolist()
        g_mner_pos += (w_mner * gl_m[labels == 1]).tolist()
        g_mner_neg += (w_mner * gl_m[labels == 0]).tolist()
        g_cm_pos += (w_cm * gl_c[labels == 1]).tolist()
        g_cm_neg += (w_cm * gl_c[labels == 0]).tolist()
        for k in groups:
            sq = {"mner": 0.0, "cm": 0.0}
            for n in params:
                if not n.startswith(k + "."):
                    continue
                gm, gh = gp_m[n], gp_h[n]
                if gm is not None:
                    sq["mner"] += float((w_mner * gm).pow(2).sum())
                if gh is not None:
                    sq["cm"] += float((w_cm * (2 * gh - (gm if gm is not None else 0))).pow(2).sum())
            for src in sq:
                norms[src][k].append(sq[src] ** 0.5)

    def sig(xs):
        return [1 / (1 + pow(2.718281828459045, -x)) for x in xs]

    return {
        "batches": batches, "alpha": alpha, "beta": beta, "train_pairs_kept_swapped": [len(pos), len(neg)],
        "insample_auc_kept_vs_swapped": rank_auc(pos, neg),
        "insample_p_mean_kept": statistics.fmean(sig(pos)), "insample_p_mean_swapped": statistics.fmean(sig(neg)),
        "dlogit_weighted_L_mner_mean_kept": statistics.fmean(g_mner_pos),
        "dlogit_weighted_L_mner_mean_swapped": statistics.fmean(g_mner_neg),
        "dlogit_weighted_L_cm_mean_kept": statistics.fmean(g_cm_pos),
        "dlogit_weighted_L_cm_mean_swapped": statistics.fmean(g_cm_neg),
        "share_of_swapped_where_L_mner_pushes_the_logit_up": statistics.fmean(g < 0 for g in g_mner_neg),
        "grad_norm_mean": {src: {k: statistics.fmean(v) for k, v in d.items()} for src, d in norms.items()},
    }


def probes(run: Path) -> dict:
    """Logistic probes on what CM reads, mean-pooled over the words (eval mode): fit on the train
    split's real vs shuffled pairs, AUC on the test split's (pairs that kept their own view left out)."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from torch.utils.data import DataLoader

    from mner.controls import rank_auc, shuffle_views

    cfg, model, data, proc = _load_run(run)
    model.eval()
    views = model.views
    cap: list = []
    logits: list = []

    def hook(_m, args):
        text, c, mask = args
        mk = mask[..., None].float()
        n = mk.sum(1).clamp(min=1)
        cap.append((((text * mk).sum(1) / n).detach(), ((c * mk).sum(1) / n).detach()))

    model.matching.register_forward_pre_hook(hook)
    model.matching.register_forward_hook(lambda m, a, o: logits.append(o.detach()))

    def pooled(exs):
        cap.clear()
        logits.clear()
        for b in DataLoader(exs, batch_size=64, collate_fn=proc.collate(False)):
            model.decode(b)
        return (torch.cat([t for t, _ in cap]).numpy(), torch.cat([c for _, c in cap]).numpy(),
                torch.cat(logits).numpy())

    out: dict = {}
    sets = {}
    for split in ("train", "test"):
        exs = [e for e in data.splits[split]
               if any((e.image if v == "pixels" else e.caption) is not None for v in views)]
        shuf, _, _ = shuffle_views(exs, views, seed=0)
        keep = np.array([a != b for a, b in zip(exs, shuf)])
        T, C, L = pooled(exs)
        Ts, Cs, Ls = pooled(shuf)
        sets[split] = (T[keep], C[keep], Ts[keep], Cs[keep])
        out[f"{split}_cm_logit_auc"] = rank_auc(L[keep].tolist(), Ls[keep].tolist())

    def probe(f):
        ttr, ctr, tstr, cstr = sets["train"]
        tte, cte, tste, cste = sets["test"]
        X = np.concatenate([f(ttr, ctr), f(tstr, cstr)])
        y = np.r_[np.ones(len(ttr)), np.zeros(len(tstr))]
        sc = StandardScaler().fit(X)
        clf = LogisticRegression(max_iter=3000, C=0.1).fit(sc.transform(X), y)
        tr = clf.decision_function(sc.transform(X))
        return {"test_auc": rank_auc(clf.decision_function(sc.transform(f(tte, cte))).tolist(),
                                     clf.decision_function(sc.transform(f(tste, cste))).tolist()),
                "train_auc": rank_auc(tr[y == 1].tolist(), tr[y == 0].tolist())}

    out["probe_linear_on_pooled_[T;C]"] = probe(lambda T, C: np.concatenate([T, C], 1))
    out["probe_linear_on_pooled_C_only"] = probe(lambda T, C: C)
    out["probe_on_T*C_and_|T-C|"] = probe(lambda T, C: np.concatenate([T * C, np.abs(T - C)], 1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("captions")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--captions", default="auto")
    p = sub.add_parser("gradients")
    p.add_argument("run", type=Path)
    p.add_argument("--batches", type=int, default=20)
    p = sub.add_parser("probes")
    p.add_argument("run", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.what == "captions":
        res = captions(args.corpus, args.captions)
    elif args.what == "gradients":
        res = gradients(args.run, args.batches)
    else:
        res = probes(args.run)
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
