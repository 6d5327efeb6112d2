"""Entity-level metrics: hand-made cases, seqeval equality, the real benchmark files."""

from __future__ import annotations

import random
import warnings

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES
from sklearn.exceptions import UndefinedMetricWarning

from mner.tagging import EntityReport, entity_types, get_spans, score, spans_to_tags, tag_problems

BENCHMARK_FILES = [f"{corpus}/{split}.txt" for corpus in ("twitter2015", "twitter2017")
                   for split in ("train", "valid", "test")]
AVERAGES = ("micro avg", "macro avg", "weighted avg")


# ----------------------------------------------------------------------------- helpers


def seqeval_scores(gold, pred, mode: str, scheme: str = "iob2", with_singles: bool = True):
    """seqeval's report (output_dict) and its micro P/R/F1 for ``mode``."""
    gold = [list(s) for s in gold]
    pred = [list(s) for s in pred]
    if mode == "conlleval":
        kwargs = {}
    else:
        kwargs = {"mode": "strict", "scheme": {"iob2": IOB2, "bioes": IOBES}[scheme]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        report = classification_report(gold, pred, output_dict=True, **kwargs)
        singles = None
        if with_singles:
            singles = (
                precision_score(gold, pred, **kwargs),
                recall_score(gold, pred, **kwargs),
                f1_score(gold, pred, **kwargs),
            )
    return report, singles


def same(a: float, b: float) -> bool:
    """Bit-exact: the same formulas in the same order give the same floats."""
    return a == b


def assert_equals_seqeval(ours: EntityReport, gold, pred, with_singles: bool = True):
    if not ours.per_type:
        # seqeval's macro average of no types is NaN (numpy's mean of nothing); ours is 0.0
        assert ours.micro.f1 == ours.macro.f1 == 0.0
        return
    report, singles = seqeval_scores(gold, pred, ours.mode, ours.scheme, with_singles)
    assert sorted(set(report) - set(AVERAGES)) == list(ours.per_type)
    rows = [(t, s) for t, s in ours.per_type.items()]
    rows += [("micro avg", ours.micro), ("macro avg", ours.macro)]
    for name, s in rows:
        ref = report[name]
        assert same(s.precision, ref["precision"]), (name, s, ref)
        assert same(s.recall, ref["recall"]), (name, s, ref)
        assert same(s.f1, ref["f1-score"]), (name, s, ref)
        assert s.support == ref["support"], (name, s, ref)
    if singles is not None:
        p, r, f = singles
        assert same(ours.micro.precision, p) and same(ours.micro.recall, r)
        assert same(ours.micro.f1, f)


def random_corpus(rng: random.Random, prefixes: str = "BI"):
    """Gold and pred sequences: tags over O/<prefixes> and 2-3 types, lengths 0..30."""
    types = ("PER", "LOC", "ORG")[: rng.choice((2, 3))]
    p_o = rng.uniform(0.2, 0.9)
    p_noise = rng.choice((0.0, 0.05, 0.2, 0.5, 1.0))

    def tag():
        return "O" if rng.random() < p_o else f"{rng.choice(prefixes)}-{rng.choice(types)}"

    gold, pred = [], []
    for _ in range(rng.randint(1, 40)):
        g = [tag() for _ in range(rng.randint(0, 30))]
        gold.append(g)
        pred.append([tag() if rng.random() < p_noise else t for t in g])
    return gold, pred


# ----------------------------------------------------------------------------- small cases


def test_hand_computed_example():
    gold = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "O"], []]
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["B-MISC", "O"], []]
    r = score(gold, pred)
    assert (r.micro.tp, r.micro.predicted, r.micro.support) == (2, 3, 3)
    assert r.micro.precision == r.micro.recall == r.micro.f1 == 2 / 3
    assert list(r.per_type) == ["LOC", "MISC", "ORG", "PER"]
    assert r.per_type["LOC"].f1 == 1.0  # the orphan I-LOC is an entity in conlleval mode
    assert (r.per_type["MISC"].predicted, r.per_type["MISC"].support) == (1, 0)
    assert r.macro.f1 == 0.5 and r.macro.precision == 0.5 and r.macro.recall == 0.5
    assert (r.n_sequences, r.n_tokens) == (3, 6)

    s = score(gold, pred, mode="strict")
    assert (s.micro.tp, s.micro.predicted, s.micro.support) == (1, 3, 2)
    assert s.per_type["LOC"].support == 0 and s.per_type["LOC"].predicted == 1
    assert s.micro.precision == 1 / 3 and s.micro.recall == 0.5
    assert s.f1 == s.micro.f1 == 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5)


def test_boundaries_and_type_must_all_match():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert score(gold, [["B-PER", "O", "O", "B-LOC"]]).micro.tp == 1  # end differs
    assert score(gold, [["O", "B-PER", "O", "B-LOC"]]).micro.tp == 1  # start differs
    assert score(gold, [["B-ORG", "I-ORG", "O", "B-LOC"]]).micro.tp == 1  # type differs
    assert score(gold, [["B-PER", "I-PER", "I-PER", "I-PER"]]).micro.tp == 0
    assert score(gold, gold).micro.tp == 2


def test_entities_do_not_cross_sequences():
    gold = [["O", "B-PER"], ["I-PER", "O"]]
    r = score(gold, [["O", "B-PER"], ["B-PER", "O"]])
    assert r.micro.f1 == 1.0 and r.micro.support == 2
    assert score(gold, gold, mode="strict").micro.support == 1


def test_zero_division_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nothing = score([["O", "O"]], [["O", "O"]])
        no_pred = score([["B-PER"]], [["O"]])
        no_gold = score([["O"]], [["B-PER"]])
        empty = score([], [])
    for r in (nothing, empty):
        assert r.per_type == {}
        assert (r.micro.precision, r.micro.recall, r.micro.f1) == (0.0, 0.0, 0.0)
        assert (r.macro.precision, r.macro.recall, r.macro.f1) == (0.0, 0.0, 0.0)
    assert (no_pred.micro.precision, no_pred.micro.recall, no_pred.micro.f1) == (0.0, 0.0, 0.0)
    assert (no_gold.micro.precision, no_gold.micro.recall, no_gold.micro.f1) == (0.0, 0.0, 0.0)
    assert no_pred.micro.support == 1 and no_gold.micro.predicted == 1


def test_length_mismatches_name_the_sequence():
    with pytest.raises(ValueError, match="gold has 2 sequences but pred has 1"):
        score([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match=r"sequence 1: gold has 2 tags but pred has 1"):
        score([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match=r"sequence 1 \(id 7123\): gold has 2 tags"):
        score([["O"], ["O", "O"]], [["O"], ["O"]], ids=["6001", "7123"])
    with pytest.raises(ValueError, match="1 ids given for 2 sequences"):
        score([["O"], ["O"]], [["O"], ["O"]], ids=["6001"])


def test_malformed_tags_name_sequence_side_and_position():
    with pytest.raises(ValueError, match=r"sequence 1 \(id b\), pred: tag 2 is malformed: 'X-PER'"):
        score([["O"], ["O", "O", "O"]], [["O"], ["O", "O", "X-PER"]], ids=["a", "b"])
    with pytest.raises(ValueError, match=r"sequence 0, gold: tag 0 is malformed: 'PER'"):
        score([["PER"]], [["O"]])
    with pytest.raises(ValueError, match=r"sequence 0, gold: tag 1 is 'S-PER'"):
        score([["O", "S-PER"]], [["O", "O"]], mode="strict")
    with pytest.raises(ValueError, match="strict mode reads iob2 or bioes"):
        score([], [], mode="strict", scheme="io")
    with pytest.raises(ValueError, match="unknown mode"):
        score([], [], mode="exact")


def test_to_dict_and_format():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC"]]
    r = score(gold, pred)
    d = r.to_dict()
    assert d["mode"] == "conlleval" and d["scheme"] == "iob2"
    assert d["micro"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8,
                          "tp": 2, "predicted": 2, "support": 3}
    assert d["per_type"]["LOC"]["recall"] == 0.5
    assert d["macro"]["recall"] == 0.75
    for part in [d["micro"], d["macro"], *d["per_type"].values()]:
        assert all(0.0 <= part[k] <= 1.0 for k in ("precision", "recall", "f1"))

    text = r.format()
    lines = text.splitlines()
    assert lines[0] == "mode: conlleval (lenient: an I- after O starts an entity)"
    assert str(r) == text
    micro = next(ln for ln in lines if ln.startswith("micro avg")).split()
    assert micro[2:5] == ["100.00", "66.67", "80.00"]
    loc = next(ln for ln in lines if ln.startswith("LOC")).split()
    assert loc[1:7] == ["100.00", "50.00", "66.67", "1", "1", "2"]

    strict = score(gold, pred, mode="strict")
    assert strict.format().splitlines()[0] == "mode: strict (IOB2: only B- starts an entity)"
    assert strict.to_dict()["mode"] == "strict"
    bioes = score([["S-PER"]], [["S-PER"]], mode="strict", scheme="iobes")
    assert bioes.scheme == "bioes" and bioes.format().startswith("mode: strict (BIOES")
    assert score([], []).format().splitlines()[0].startswith("mode: conlleval")


# ----------------------------------------------------------------------------- vs seqeval


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_equals_seqeval_on_random_iob_tags(mode):
    rng = random.Random(2024 if mode == "strict" else 2025)
    n_sequences = n_with_entities = 0
    for _ in range(250):
        gold, pred = random_corpus(rng, "BI")
        ours = score(gold, pred, mode=mode)
        assert_equals_seqeval(ours, gold, pred)
        n_sequences += len(gold)
        n_with_entities += bool(ours.per_type)
    assert n_sequences > 4000 and n_with_entities > 200


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_equals_seqeval_on_random_bioes_tags(mode):
    rng = random.Random(77)
    for _ in range(100):
        gold, pred = random_corpus(rng, "BIES")
        assert_equals_seqeval(score(gold, pred, mode=mode, scheme="bioes"), gold, pred)


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def benchmark(data_dir):
    from mner.data.formats import read_file

    files = [data_dir / f for f in BENCHMARK_FILES]
    missing = [p for p in files if not p.is_file()]
    assert not missing, f"benchmark files missing: {missing}"
    return {f"{p.parent.name}/{p.stem}": read_file(p) for p in files}


def perturb(tags, rng: random.Random, types) -> list[str]:
    """A plausible wrong prediction: drop entities, change types, shift boundaries, then
    insert orphan I- tags and turn some B- into I-."""
    n = len(tags)
    spans = []
    for s, e, t in (sp.key for sp in get_spans(tags)):
        r = rng.random()
        if r < 0.1:
            continue
        if r < 0.2:
            t = rng.choice([x for x in types if x != t] or [t])
        elif r < 0.3:
            s = min(max(0, s + rng.choice((-1, 1))), e - 1)
        elif r < 0.4:
            e = max(min(n, e + rng.choice((-1, 1))), s + 1)
        if spans and s < spans[-1][1]:
            continue
        spans.append((s, e, t))
    out = spans_to_tags(spans, n)
    for i, tag in enumerate(out):
        if tag == "O" and rng.random() < 0.03:
            out[i] = "I-" + rng.choice(types)
        elif tag.startswith("B-") and rng.random() < 0.1:
            out[i] = "I-" + tag[2:]
    return out


def test_benchmark_gold_vs_gold(benchmark):
    for name, examples in benchmark.items():
        gold = [ex.tags for ex in examples]
        for mode in ("conlleval", "strict"):
            r = score(gold, gold, mode=mode, ids=[ex.id for ex in examples])
            assert r.micro.f1 == 1.0 and r.macro.f1 == 1.0, (name, mode)
            assert r.n_sequences == len(examples)


def test_twitter2015_test_entity_counts(benchmark):
    examples = benchmark["twitter2015/test"]
    assert len(examples) == 3257
    gold = [ex.tags for ex in examples]
    n_b = sum(t.startswith("B-") for tags in gold for t in tags)
    orphans = sum(
        "orphan" in msg for tags in gold for _, msg in tag_problems(tags, "iob2")
    )
    assert (n_b, orphans) == (5072, 135)
    assert score(gold, gold).micro.support == 5207
    assert score(gold, gold, mode="strict").micro.support == 5072


@pytest.mark.slow
def test_benchmark_perturbed_equals_seqeval(benchmark):
    rng = random.Random(31337)
    for name, examples in benchmark.items():
        gold = [list(ex.tags) for ex in examples]
        types = entity_types(gold)
        for k in range(2):
            pred = [perturb(tags, rng, types) for tags in gold]
            for mode in ("conlleval", "strict"):
                ours = score(gold, pred, mode=mode)
                assert 0.3 < ours.micro.f1 < 0.95, (name, k, mode, ours.micro)
                # the single-number functions repeat the report's micro row; check them
                # on the test splits only (seqeval is slow on the big files)
                assert_equals_seqeval(ours, gold, pred, with_singles=name.endswith("test"))
