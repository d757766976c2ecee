"""dataset=translation: several valid translations of each source sentence (the lecture's second example)."""

import unicodedata
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ebm_cli.core.dataset import Dataset, check_data_file
from ebm_cli.core.spaces import SequenceSpace
from ebm_cli.datasets.translation.data import EOS, PAD, SRC_PAD, decode, encode, load_tsv
from ebm_cli.datasets.translation.grammar import generate_pairs
from ebm_cli.datasets.translation.metrics import token_mismatches, translation_metrics
from ebm_cli.datasets.translation.texts import translation_texts
from ebm_cli.errors import UserError, require, require_non_negative, require_positive


class Translation(Dataset):
    """Token sequences: x_train (N, Ls) source ids (0 pads); y_train (N, T) target ids, each ended by
    EOS and padded; x_test (M, Ls); valid (M, V, T) padded valid sets with valid_mask (M, V). From a
    small synchronous grammar whose every source has a known set of valid translations, or a UTF-8
    TSV (`source<TAB>target`; a repeated source has several valid targets). The distance is the
    number of mismatched tokens (eps = 0: exact match); the metrics add BLEU (sacrebleu).

    Args:
        path: a TSV file; None = generate.
        train_size: generated distinct training sources (one row per valid translation).
        test_size: generated distinct held-out sources, built from the same words.
        test_fraction: TSV: share of the distinct sources held out.
        max_valid: generated: the largest valid set (sentences with more are redrawn).
        adjective_rate: generated: chance of an adjective in each noun phrase.
        adverb_rate: generated: chance of a closing adverb (hoy: word order; ahora: optional word).
        eps: token mismatches allowed (0 = exact match).
        seed: the data's own seed; None = the run's.
        run_seed: the run's seed (from the runner).
    """

    baseline = None  # no feed-forward MSE model for sentences: the one-mode chain (energy.z.k=1) is

    def __init__(self, path: Optional[str] = None, train_size: int = 3000, test_size: int = 300,
                 test_fraction: float = 0.1, max_valid: int = 4, adjective_rate: float = 0.5, adverb_rate: float = 0.5,
                 eps: float = 0.0, seed: Optional[int] = None, run_seed: int = 0):
        require_positive(train_size=train_size, test_size=test_size)
        require_non_negative(eps=eps)
        require(0 < test_fraction < 1, "test_fraction", test_fraction, "must be between 0 and 1")
        require(max_valid >= 1, "max_valid", max_valid, "must be >= 1")
        for key, rate in (("adjective_rate", adjective_rate), ("adverb_rate", adverb_rate)):
            require(0 <= rate <= 1, key, rate, "must be in [0, 1]")
        seed = seed if seed is not None else run_seed
        self.eps = eps
        if path is None:
            pairs, test = generate_pairs(train_size, test_size, max_valid, adjective_rate, adverb_rate, seed)
            self.source = "generated"
        else:
            check_data_file(path)
            pairs = load_tsv(path)
            if len(pairs) < 2:
                raise UserError(f"{path}: needs at least 2 distinct sources (some to train on, some to test)")
            order = np.random.default_rng(seed).permutation(len(pairs))
            names = list(pairs)
            n_test = max(1, int(round(test_fraction * len(pairs))))
            test = [names[i] for i in order[:n_test]]
            self.source = path
        test_set = set(test)
        train = [s for s in pairs if s not in test_set]
        src_words = sorted({w for s in pairs for w in s.split()})
        tgt_words = sorted({w for ts in pairs.values() for t in ts for w in t.split()})
        self.src_vocab, self.tgt_vocab = [SRC_PAD, *src_words], [PAD, EOS, *tgt_words]
        s_index = {w: i for i, w in enumerate(self.src_vocab)}
        t_index = {w: i for i, w in enumerate(self.tgt_vocab)}
        src_len = max(len(s.split()) for s in pairs)
        tgt_len = max(len(t.split()) for ts in pairs.values() for t in ts) + 1  # + EOS
        rows = [(s, t) for s in train for t in pairs[s]]  # one training row per valid target
        v = max(len(pairs[s]) for s in test)
        self.valid = torch.zeros(len(test), v, tgt_len, dtype=torch.long)
        self.valid_mask = torch.zeros(len(test), v, dtype=torch.bool)
        for i, s in enumerate(test):
            self.valid[i, : len(pairs[s])] = encode(pairs[s], t_index, tgt_len, end=True)
            self.valid_mask[i, : len(pairs[s])] = True
        self.x_train = encode([s for s, _ in rows], s_index, src_len, end=False)
        self.y_train = encode([t for _, t in rows], t_index, tgt_len, end=True)
        self.x_test = encode(test, s_index, src_len, end=False)
        self.y_space = SequenceSpace(len(self.tgt_vocab), tgt_len, eos=t_index[EOS], pad=t_index[PAD])

    def decode(self, ids: Sequence[int]) -> str:
        """Target ids -> the sentence (up to EOS)."""
        return decode(ids, self.tgt_vocab)

    def source_text(self, ids: Sequence[int]) -> str:
        return " ".join(self.src_vocab[int(i)] for i in ids if int(i) != 0)

    def energy_args(self) -> Dict[str, Any]:
        return {"x_shape": list(self.x_train.shape[1:]), "src_vocab": self.src_vocab, "tgt_vocab": self.tgt_vocab,
                "length": int(self.y_train.shape[1]), "y_space": self.y_space.to_config(),
                "outputs_per_input": self.outputs_per_input}

    def distance(self, a, b):
        return token_mismatches(a, b)

    def metrics(self, y, mask):
        """Exact-match coverage and precision; BLEU too, except on the validation split (scored every
        few hundred steps, where sacrebleu would cost more than the search)."""
        # scored as the sentences they read: "w <pad>" is the reference "w <eos>" (the decoded text)
        y = self.y_space.canonical(y.cpu())
        return translation_metrics(y, mask.cpu(), self.valid, self.valid_mask, self.eps, self.decode,
                                   bleu=not self.validation_split)

    def figures(self, energy, logger, device, candidates=None, baseline=None):
        return {}  # sentences are shown as text (texts)

    def texts(self, energy, logger, device):
        return translation_texts(energy, self, logger, device)

    @classmethod
    def parse_inputs(cls, values: Sequence[Any], meta: Dict[str, Any]) -> torch.Tensor:
        """x=['el gato ve el perro', ...]: source sentences of the run's words, as ids (N, Ls)."""
        index = {w: i for i, w in enumerate(meta["src_vocab"])}
        length = int(meta["x_shape"][0])
        sentences: List[str] = []
        for v in values:
            words = unicodedata.normalize("NFC", str(v)).split()  # as the training file's words
            unknown = [w for w in words if w not in index or w == SRC_PAD]
            if unknown:
                raise UserError(f"x={list(values)}: {unknown[0]!r} is not a source word of this run")
            if not words or len(words) > length:
                raise UserError(f"x={list(values)}: a source sentence has 1 to {length} words, not {len(words)}")
            sentences.append(" ".join(words))
        return encode(sentences, index, length, end=False)

    @classmethod
    def describe(cls, y: torch.Tensor, meta: Dict[str, Any]) -> str:
        return decode(y.tolist(), meta["tgt_vocab"])
