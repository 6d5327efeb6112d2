"""Speed of :mod:`mner.crf` against pytorch-crf on the CPU.

Times, on the same random inputs and the same transition scores:

* ``decode``: Viterbi decoding (under ``torch.no_grad()``, as at inference);
* ``nll``: the negative log-likelihood forward, autograd recording (as in training);
* ``nll_backward``: that forward plus ``backward()``.

for two masks: every position valid (``full``) and random lengths 1..seq_len (``varlen``).
Each figure is the median over ``--repeats`` samples of the mean of ``--number`` calls; the two
implementations are timed alternately so that machine noise hits both alike. Speedup =
pytorch-crf time / mner time. The last line of the output is one JSON object of the figures.

    .venv/bin/python bench/crf_speed.py --threads 1

pytorch-crf (``pip install pytorch-crf==0.7.2``, the ``test`` extra) is only needed here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mner.crf import CRF


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=60)
    parser.add_argument("--num-tags", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    parser.add_argument("--repeats", type=int, default=20, help="samples per figure")
    parser.add_argument("--number", type=int, default=20, help="calls per sample")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def time_pair(ref_fn, our_fn, args) -> tuple[float, float]:
    """Median milliseconds per call of ``ref_fn`` and ``our_fn``, sampled alternately."""
    for _ in range(args.warmup):
        ref_fn()
        our_fn()
    ref, ours = [], []
    for _ in range(args.repeats):
        for fn, out in ((ref_fn, ref), (our_fn, ours)):
            start = time.perf_counter()
            for _ in range(args.number):
                fn()
            out.append((time.perf_counter() - start) / args.number * 1e3)
    return statistics.median(ref), statistics.median(ours)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        import torchcrf
    except ImportError as err:
        raise SystemExit("needs pytorch-crf: pip install pytorch-crf==0.7.2") from err
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(args.seed)
    batch, seq_len, num_tags = args.batch, args.seq_len, args.num_tags
    ref = torchcrf.CRF(num_tags, batch_first=True)
    with torch.no_grad():  # scores of a trained-looking model, not the near-zero init
        for p in ref.parameters():
            p.normal_(generator=gen)
    ours = CRF(num_tags)
    ours.load_state_dict(ref.state_dict())

    emissions = torch.randn(batch, seq_len, num_tags, generator=gen)
    tags = torch.randint(num_tags, (batch, seq_len), generator=gen)
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
    lengths[0] = seq_len
    masks = {
        "full": torch.ones(batch, seq_len, dtype=torch.bool),
        "varlen": torch.arange(seq_len)[None, :] < lengths[:, None],
    }

    results: dict[str, dict[str, tuple[float, float]]] = {}
    for variant, mask in masks.items():
        # same answers first: a speedup of a wrong answer is no speedup
        with torch.no_grad():
            if ref.decode(emissions, mask) != ours.decode(emissions, mask):
                raise SystemExit(f"{variant}: decoded paths differ from pytorch-crf")
            ref_nll = -ref(emissions, tags, mask, reduction="sum")
            our_nll = ours(emissions, tags, mask, reduction="sum")
            if not torch.allclose(ref_nll, our_nll, rtol=1e-4):
                raise SystemExit(f"{variant}: NLL {our_nll} differs from pytorch-crf {ref_nll}")
        grad_emissions = emissions.clone().requires_grad_()

        def ref_decode(mask=mask):
            with torch.no_grad():
                ref.decode(emissions, mask)

        def our_decode(mask=mask):
            with torch.no_grad():
                ours.decode(emissions, mask)

        def ref_nll_fn(mask=mask):
            return -ref(grad_emissions, tags, mask, reduction="mean")

        def our_nll_fn(mask=mask):
            return ours(grad_emissions, tags, mask, reduction="mean")

        results[variant] = {
            "decode": time_pair(ref_decode, our_decode, args),
            "nll": time_pair(ref_nll_fn, our_nll_fn, args),
            "nll_backward": time_pair(
                lambda: ref_nll_fn().backward(), lambda: our_nll_fn().backward(), args
            ),
        }

    print(
        f"batch={batch} seq_len={seq_len} num_tags={num_tags} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} repeats={args.repeats}x{args.number}"
    )
    print(f"{'mask':<8}{'op':<14}{'pytorch-crf ms':>16}{'mner ms':>10}{'speedup':>9}")
    figures: dict = {}
    for variant, ops in results.items():
        for op, (ref_ms, our_ms) in ops.items():
            print(f"{variant:<8}{op:<14}{ref_ms:>16.3f}{our_ms:>10.3f}{ref_ms / our_ms:>8.2f}x")
            suffix = "" if variant == "full" else f"_{variant}"
            figures[f"{op}_speedup{suffix}"] = round(ref_ms / our_ms, 2)
            figures[f"{op}_ms{suffix}"] = dict(pytorch_crf=round(ref_ms, 4), mner=round(our_ms, 4))
    figures.update(
        batch=batch,
        seq_len=seq_len,
        num_tags=num_tags,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
