"""dataset=translation end to end: the grammar's valid sets, the TSV loader, the chain energy's
dynamic programming against brute force, BLEU against sacrebleu called directly, and a smoke run
whose text summaries are read back from the event file."""

import itertools
import json
import math
import shutil

import pytest
import sacrebleu
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ebm_cli.build import build_dataset, build_run
from ebm_cli.core.energy import ChainEnergy
from ebm_cli.core.spaces import DiscreteZ, SequenceSpace
from ebm_cli.datasets.translation import Translation
from ebm_cli.datasets.translation.data import load_tsv
from ebm_cli.datasets.translation.grammar import grammar_sentence
from ebm_cli.datasets.translation.metrics import multi_reference_bleu, pairwise_bleu, translation_metrics
from ebm_cli.energies.chain import AttentionChainEnergy
from ebm_cli.errors import UserError
from ebm_cli.free_energy import FreeEnergy
from ebm_cli.inference.dp import DPInference
from ebm_cli.losses.nll import NLL
from ebm_cli.tasks.train import prepare, train
from helpers import make_cfg, run_cli

SMOKE = ["experiment=translation_latent", "debug=smoke"]


def load_translation(run_seed=0, **overrides):
    """The generated translation dataset with small sizes (its own seed 0, which wins over the run's)."""
    base = dict(path=None, train_size=200, test_size=40, test_fraction=0.2, max_valid=4, adjective_rate=0.5,
                adverb_rate=0.5, seed=0)
    return Translation(**{**base, **overrides}, run_seed=run_seed)


def test_grammar_valid_sets_are_the_products_of_the_choices():
    rng = __import__("numpy").random.default_rng(0)
    seen_lengths = set()
    for _ in range(300):
        src, targets = grammar_sentence(rng)
        choices = 1
        for word in src:  # each synonym pair, the order of hoy and the optional "right" double the set
            choices *= 2 if word in ("ve", "busca", "ama", "grande", "pequeno", "hoy", "ahora") else 1
        assert len(set(targets)) == len(targets) == choices
        seen_lengths.update(len(t) for t in targets)
        if "hoy" in src:
            assert all(t[0] == "today" or t[-1] == "today" for t in targets)
        if "ahora" in src:
            assert {t[-2:] for t in targets} <= {("right", "now")} | {(t[-2], "now") for t in targets}
        assert all(t[0] in ("the", "today") for t in targets)
    assert len(seen_lengths) >= 4  # optional words and "looks for": targets of different lengths


def test_generated_split_holds_out_unseen_sources_built_from_seen_words():
    data = load_translation()
    train_sources = {data.source_text(x) for x in data.x_train}
    test_sources = [data.source_text(x) for x in data.x_test]
    assert len(test_sources) == 40 and not train_sources & set(test_sources)
    train_words = {w for s in train_sources for w in s.split()}
    assert {w for s in test_sources for w in s.split()} <= train_words
    assert 1 <= int(data.valid_mask.sum(1).min()) and int(data.valid_mask.sum(1).max()) <= 4
    # every target ends with EOS (id 1), then pads (id 0)
    ends = (data.y_train == 1).int().argmax(1)
    assert all(data.y_train[i, ends[i] + 1:].eq(0).all() for i in range(len(ends)))


def test_tsv_from_a_spreadsheet_reads_as_typed(tmp_path):
    """A byte-order mark, empty columns after the target and a decomposed "ñ" (n + combining tilde)
    change nothing: the first source is "el niño", one word with the composed form."""
    path = tmp_path / "excel.tsv"
    path.write_text("\ufeffel nin\u0303o\tthe boy\t\t\nel niño\tthe child\nla niña\tthe girl\t\n", encoding="utf-8")
    assert load_tsv(str(path)) == {"el niño": ["the boy", "the child"], "la niña": ["the girl"]}


def test_tsv_repeated_sources_are_valid_sets_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "pairs.tsv"
    good.write_text("# German to English\n\nder hund\tthe dog\nder hund\tthe hound\ndie katze\tthe cat\n"
                    "ein hund\ta dog\n", encoding="utf-8")
    assert load_tsv(str(good)) == {"der hund": ["the dog", "the hound"], "die katze": ["the cat"], "ein hund": ["a dog"]}
    bad = tmp_path / "bad.tsv"
    bad.write_text("der hund\tthe dog\nno tab here\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.tsv: line 2: expected source<TAB>target, got 0 tabs"):
        load_tsv(str(bad))
    bad.write_text("der hund\t \n", encoding="utf-8")
    with pytest.raises(UserError, match="line 1: empty target"):
        load_tsv(str(bad))
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_tsv(str(bad))
    # a whole text on one line: refused by its line number at once, not minutes of padding to its length
    bad.write_text("der hund\tthe dog\n" + " ".join(f"w{i}" for i in range(50000)) + "\tthe end\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 2: a sentence of 50000 words"):
        load_tsv(str(bad))


@pytest.mark.parametrize("eliminate", ["softmin", "min"])
def test_chain_dp_matches_brute_force_on_a_tiny_vocabulary(eliminate):
    torch.manual_seed(0)
    energy = AttentionChainEnergy(hidden=8, z=DiscreteZ(2), free_energy=FreeEnergy(eliminate=eliminate),
                                  src_vocab=[f"s{i}" for i in range(6)], tgt_vocab=[f"t{i}" for i in range(3)], length=4)
    y_space = SequenceSpace(states=3, length=4)
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    seqs = torch.tensor(list(itertools.product(range(3), repeat=4)))  # all 81 target sequences
    e_all = torch.stack([energy.mode_energies(x[b:b + 1].expand(len(seqs), -1), seqs) for b in range(2)])  # (B, N, K)
    for beta in (0.01, 1.0, 30.0):
        f = energy.mode_free_energies(x, beta)  # forward algorithm
        brute = -torch.logsumexp(-beta * e_all, dim=1) / beta
        assert torch.allclose(f, brute, rtol=1e-5, atol=1e-5)
    # Viterbi per mode is the argmin over all sequences; the NLL is the exact one
    cands = DPInference(k=2, split_prob=1.0, y_space=y_space)(energy, x)  # each mode's argmax only
    for b in range(2):
        best = {tuple(seqs[e_all[b, :, z].argmin()].tolist()) for z in range(2)}
        got = {tuple(cands.y[b, j].tolist()) for j in range(2) if cands.mask[b, j]}
        assert got == best
    y = seqs[[5, 40]]
    beta = 0.7
    energy.set_beta(beta)  # the chain soft-minimises its modes at its own beta (the trainer sets it every step)
    loss, _ = NLL(y_space=y_space)(energy, x, y, beta)
    e_y = torch.stack([e_all[b, [5, 40][b]] for b in range(2)])  # (B, K)
    nll = e_y + torch.logsumexp(-e_all, dim=1)  # -log P(y | x, z), each mode normalised: (B, K)
    if eliminate == "softmin":  # the uniform mixture, z soft-minimised at beta
        brute = -(torch.logsumexp(-beta * nll, 1) - math.log(2)) / beta
    else:
        brute = nll.min(1).values
    assert float(loss.detach()) == pytest.approx(float(brute.detach().mean()), rel=1e-5)


class TableChain(ChainEnergy):
    """A chain energy read from a table: x = [[i]] picks the i-th (K, T, S) unary table; no transition
    costs. Lets a test set each mode's Gibbs distribution exactly."""

    def __init__(self, unary: torch.Tensor):
        super().__init__(DiscreteZ(unary.shape[1]))
        self.unary = unary  # (X, K, T, S)

    def potentials(self, x):
        k, _, s = self.unary.shape[1:]
        return self.unary[x[:, 0]], torch.zeros(k, s, s)


def sure(*tokens, length=3, states=4, far=30.0):
    """A mode's unary table (T, S) that allows only this sequence: P ~ 1."""
    u = torch.full((length, states), far)
    for t, token in enumerate(tokens):
        u[t, token] = 0.0
    return u


def test_a_mode_split_between_two_sentences_gives_both_and_one_sentence_is_one_candidate():
    pad, eos, a, b = 0, 1, 2, 3
    space = SequenceSpace(states=4, length=3, eos=eos, pad=pad)
    split = sure(a, eos, pad)
    split[0, b] = 0.1  # "a" with P = 0.525, "b" with P = 0.475
    unary = torch.stack([
        torch.stack([split, sure(a, eos, pad), sure(a, eos, pad)]),  # x 0: mode 0 split, modes 1 and 2 sure of "a"
        torch.stack([sure(a, eos, pad)] * 3),                         # x 1: every mode sure of "a"
        torch.stack([sure(a, pad, pad), sure(a, eos, pad), sure(a, pad, pad)]),  # "a <pad> <pad>" reads "a <eos> <pad>"
    ])
    energy, x = TableChain(unary), torch.tensor([[0], [1], [2]])

    def sentences(cands, i):
        return [tuple(cands.y[i, j].tolist()) for j in range(cands.y.shape[1]) if cands.mask[i, j]]

    cands = DPInference(k=4, y_space=space)(energy, x)
    assert sentences(cands, 0) == [(a, eos, pad), (b, eos, pad)]  # the split mode's runner-up too ...
    assert int(cands.z[0, 1, 0]) == 0  # ... named by its own mode
    assert float(cands.energy[0, 1]) == pytest.approx(-math.log(0.475), abs=1e-3)  # ranked by -log P(y | x, z)
    assert sentences(cands, 1) == [(a, eos, pad)]  # sure modes' runner-ups (P ~ e^-30) stay out
    assert sentences(cands, 2) == [(a, eos, pad)]  # one sentence, one candidate
    only_argmax = DPInference(k=4, split_prob=1.0, y_space=space)(energy, x)
    assert sentences(only_argmax, 0) == [(a, eos, pad)]  # mode 0's argmax repeats the others': "b" is lost
    # scored as the sentences they read
    assert torch.equal(space.canonical(torch.tensor([[a, pad, pad], [a, pad, b], [a, b, eos], [b, a, b]])),
                       torch.tensor([[a, eos, pad], [a, eos, pad], [a, b, eos], [b, a, b]]))
    assert torch.equal(SequenceSpace(states=4, length=3).canonical(x), x)  # no eos: the ids as they are
    assert torch.equal(SequenceSpace(states=4, length=3, eos=eos).canonical(torch.tensor([[pad, a, eos, b]])),
                       torch.tensor([[pad, a, eos, eos]]))  # without a pad symbol, id 0 is a word


def test_a_sentence_is_scored_by_every_path_that_reads_as_it():
    pad, eos, a, b = 0, 1, 2, 3
    space = SequenceSpace(states=4, length=3, eos=eos, pad=pad)
    mode = sure(a, eos, pad)
    mode[1, pad] = 0.0  # "a <eos> <pad>" and "a <pad> <pad>": P = 0.3 each, one sentence "a" with 0.6
    mode[0, b] = math.log(0.3 / 0.2)  # "b <eos> <pad>" and "b <pad> <pad>": 0.2 each, "b" with 0.4
    cands = DPInference(k=4, y_space=space)(TableChain(mode[None, None]), torch.tensor([[0]]))
    assert cands.y[0, : int(cands.mask[0].sum())].tolist() == [[a, eos, pad], [b, eos, pad]]
    assert torch.allclose(cands.energy[0, :2], -torch.log(torch.tensor([0.6, 0.4])), atol=1e-4)
    # a sentence is every path that reads as it: here each of "a" (0.55) and "b" (0.45) is 128 paths
    # (<eos> or <pad>, then any of 4 tokens three times), so no path of "b" is among the mode's best 8
    spread = torch.zeros(5, 4)
    spread[0, :] = 30.0
    spread[0, a], spread[0, b] = 0.0, math.log(0.55 / 0.45)
    spread[1, :] = 30.0
    spread[1, eos] = spread[1, pad] = 0.0
    long_space = SequenceSpace(states=4, length=5, eos=eos, pad=pad)
    cands = DPInference(k=4, y_space=long_space)(TableChain(spread[None, None]), torch.tensor([[0]]))
    assert cands.y[0, : int(cands.mask[0].sum())].tolist() == [[a, eos, pad, pad, pad], [b, eos, pad, pad, pad]]
    assert torch.allclose(cands.energy[0, :2], -torch.log(torch.tensor([0.55, 0.45])), atol=1e-4)
    with pytest.raises(UserError, match="split_prob"):
        DPInference(split_prob=0.001)


def test_bleu_figures_agree_with_sacrebleu_called_directly():
    hyps = ["the cat sees the dog", "the boy eats the fish today"]
    refs = [["the cat sees the dog", "the cat watches the dog"], ["today the boy eats the fish"]]
    # variable reference counts: the missing second reference repeats the first
    direct = sacrebleu.corpus_bleu(hyps, [["the cat sees the dog", "today the boy eats the fish"],
                                          ["the cat watches the dog", "today the boy eats the fish"]]).score
    assert multi_reference_bleu(hyps, refs) == pytest.approx(direct)
    outputs = [["the cat sees the dog", "the cat watches the dog"], ["the boy eats"]]
    pairs = sacrebleu.corpus_bleu(["the cat sees the dog", "the cat watches the dog"],
                                  [["the cat watches the dog", "the cat sees the dog"]]).score
    assert pairwise_bleu(outputs) == pytest.approx(pairs)
    assert pairwise_bleu([["one"], ["two"]]) == 100.0  # no source with two outputs: no diversity


def test_exact_match_metrics_on_hand_made_outputs():
    data = load_translation(run_seed=1, train_size=20, test_size=3)
    k = 4
    y = data.valid.clone()  # predict exactly the valid sets ...
    mask = data.valid_mask.clone()
    m = translation_metrics(y, mask, data.valid, data.valid_mask, 0.0, data.decode)
    assert m["coverage@0"] == 1.0 and m["precision@0"] == 1.0 and m["bleu"] == pytest.approx(100.0)
    assert m["refs_covered"] == pytest.approx(float(data.valid_mask.sum(1).double().mean()))
    y[:, 0, 0] = 2  # ... but change the first word of every first candidate
    m2 = translation_metrics(y, mask, data.valid, data.valid_mask, 0.0, data.decode)
    assert m2["precision@0"] == pytest.approx(1 - 3 / float(mask.sum()))
    assert y.shape[1] <= k
    unended = data.valid.masked_fill(data.valid == 1, 0)  # "w1 w2 <pad>": the same sentences, no <eos>
    m3 = data.metrics(unended, mask)
    assert m3["coverage@0"] == 1.0 and m3["precision@0"] == 1.0


@pytest.fixture(scope="module")
def smoke_translation_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("translation_run")
    return run_dir, train(make_cfg(*SMOKE), run_dir)


def test_smoke_run_logs_translations_as_text_and_reports_the_metrics(smoke_translation_run):
    run_dir, metrics = smoke_translation_run
    for key in ("coverage@0", "precision@0", "refs_covered", "bleu", "pairwise_bleu", "latent_entropy"):
        assert key in metrics and math.isfinite(metrics[key])
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    events = acc.Tensors("landscape/translations/text_summary")
    assert [e.step for e in events] == [15, 30]
    text = events[-1].tensor_proto.string_val[0].decode()
    assert "| source | valid translations | z | output |" in text and text.count("\n") >= 5 * 4
    assert (run_dir / "figures" / "translations.md").read_text(encoding="utf-8").strip() == text.strip()


def test_a_run_saved_before_split_prob_and_end_symbols_is_served_and_resumed_as_it_ran(smoke_translation_run, tmp_path):
    """A translation run saved by an earlier version (no checkpoint format, no inference.split_prob,
    a sequence space without its end symbols) is served with each mode's argmax, as it ran, its paths
    read as sentences; the command line can still change split_prob, and a resume names the
    difference in one line."""
    from ebm_cli.runtime.checkpoint import load_checkpoint
    from ebm_cli.runtime.run_folder import config_difference
    from ebm_cli.tasks.infer import inference_node, load_run

    old = tmp_path / "old"
    shutil.copytree(smoke_translation_run[0], old)
    for path in sorted((old / "checkpoints").glob("*.pt")):
        state = load_checkpoint(path)
        cfg = OmegaConf.create(state["config"])
        del cfg.inference["split_prob"]
        state["config"] = OmegaConf.to_yaml(cfg)
        state["meta"]["y_space"] = {k: v for k, v in state["meta"]["y_space"].items() if k not in ("eos", "pad")}
        del state["format"]  # written before checkpoints carried their format
        torch.save(state, path)
    saved = load_checkpoint(old / "checkpoints" / "last.pt")["config"]
    _, run_cfg, state = load_run(old, torch.device("cpu"))
    assert run_cfg.inference.split_prob == 1.0
    assert (state["meta"]["y_space"]["eos"], state["meta"]["y_space"]["pad"]) == (1, 0)
    overrides = ["inference.split_prob=0.5"]
    assert inference_node(make_cfg(*SMOKE, *overrides), run_cfg, overrides).split_prob == 0.5
    today = OmegaConf.to_yaml(make_cfg(*SMOKE), resolve=True)
    assert config_difference(saved, today) == "inference.split_prob: 1.0 there, 0.25 here"
    assert config_difference(saved, OmegaConf.to_yaml(make_cfg(*SMOKE, "inference.split_prob=1"), resolve=True)) is None
    assert config_difference(saved, saved) is None  # a config without the key (a user's own yaml) is itself
    # served from the command line as it ran: each mode's argmax, so no mode twice; the column says what it ranks by
    source = build_dataset(run_cfg).source_text(build_dataset(run_cfg).x_test[0])
    proc = run_cli(["task=infer", f"run_dir={old}", f"x=[{source!r}]", f"hydra.run.dir={tmp_path / 'served'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "-log P(y | x, z)" in proc.stdout
    found = json.loads((tmp_path / "served" / "candidates.json").read_text())[0]["candidates"]
    modes = [c["z"][0] for c in found]
    assert found and len(modes) == len(set(modes))


def test_a_tsv_in_another_language_pair_trains_and_evaluates(tmp_path):
    nouns = {"hund": "dog", "katze": "cat", "maus": "mouse", "vogel": "bird", "pferd": "horse", "fuchs": "fox"}
    verbs = {"sieht": ["sees", "watches"], "jagt": ["chases"], "mag": ["likes", "fancies"]}
    lines = ["# German to English, generated in the test"]
    for (a, ea), v, (b, eb) in itertools.product(nouns.items(), verbs, nouns.items()):
        for ev in verbs[v]:
            lines.append(f"der {a} {v} den {b}\tthe {ea} {ev} the {eb}")
    path = tmp_path / "de_en.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    metrics = train(make_cfg(*SMOKE, f"dataset.path={path}", "logger.landscape_every=0"), tmp_path / "run")
    assert 0 <= metrics["coverage@0"] <= 1 and metrics["refs_per_source"] > 1


@pytest.mark.parametrize("overrides,message", [
    (["energy=mlp"], "energy: MLPEnergy needs 'x_dim', which its config does not set and the runner does not provide"),
    (["inference=grid"], "inference=grid searches a continuous y in a box; this data's y is SequenceSpace"),
    (["loss=hinge"], "loss=hinge needs a continuous y"),
    (["energy.free_energy.eliminate=max"], "energy.free_energy.eliminate=max: must be one of softmin, min"),
    (["dataset.max_valid=0"], "dataset.max_valid=0: must be >= 1"),
])
def test_impossible_translation_settings_are_named(overrides, message):
    with pytest.raises(UserError) as err:
        build_run(make_cfg(*SMOKE, *overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_no_mse_baseline_for_sentences():
    """trainer.baseline is a trainer setting: refused when the run is prepared, before anything is written."""
    with pytest.raises(UserError, match="trainer.baseline=true: Translation data has no feed-forward MSE model"):
        prepare(make_cfg(*SMOKE, "trainer.baseline=true"))
