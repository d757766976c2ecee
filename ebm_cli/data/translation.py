"""Translation pairs: token sequences with several valid translations per source sentence.

Generated from a small synchronous grammar (a Spanish-like source, an English-like target) whose
every source has a known set of valid translations, or loaded from a UTF-8 TSV
(`source<TAB>target` per line; repeated sources give several valid targets; blank lines and lines
starting with `#` are skipped). Both end up as the same `TranslationData`: training rows (source,
one valid target) and, for every held-out source, its whole valid set.
"""

import itertools
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ebm_cli.errors import UserError

PAD, EOS = "<pad>", "<eos>"  # target symbols: index 0 pads, index 1 ends a sentence
SRC_PAD = "<pad>"

# The grammar: source word -> its translations (each a tuple of target words). Words with two
# translations are synonyms; "busca" -> "looks for" also changes the length.
NOUNS = {"gato": [("cat",)], "perro": [("dog",)], "nino": [("boy",)], "pajaro": [("bird",)],
         "raton": [("mouse",)], "caballo": [("horse",)], "zorro": [("fox",)], "pez": [("fish",)]}
VERBS = {"ve": [("sees",), ("watches",)], "busca": [("seeks",), ("looks", "for")], "sigue": [("follows",)],
         "come": [("eats",)], "ama": [("loves",), ("adores",)], "oye": [("hears",)]}
ADJECTIVES = {"grande": [("big",), ("large",)], "negro": [("black",)], "pequeno": [("small",), ("little",)],
              "rojo": [("red",)], "viejo": [("old",)]}
# Adverbs at the end of the source: "hoy" may open or close the target (word order);
# "ahora" is "now" or "right now" (an optional word).
ADVERBS = {"hoy": "order", "ahora": "optional"}


@dataclass
class TranslationData:
    """x_train: (N, Ls) source token ids (0 pads); y_train: (N, T) target ids, each ended by EOS
    and padded; x_test: (M, Ls); valid: (M, V, T) padded valid sets with valid_mask (M, V).
    src_vocab / tgt_vocab: id -> word."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    valid: torch.Tensor
    valid_mask: torch.Tensor
    src_vocab: List[str]
    tgt_vocab: List[str]
    source: str

    def decode(self, ids: Sequence[int]) -> str:
        """Target ids -> the sentence (up to EOS)."""
        words = []
        for i in ids:
            if int(i) <= 1:  # PAD or EOS
                break
            words.append(self.tgt_vocab[int(i)])
        return " ".join(words)

    def source_text(self, ids: Sequence[int]) -> str:
        return " ".join(self.src_vocab[int(i)] for i in ids if int(i) != 0)


def _phrase(rng: np.random.Generator, adjective_rate: float) -> Tuple[List[str], List[List[Tuple[str, ...]]]]:
    """A noun phrase: source words and, per target slot, the alternatives (adjective before noun)."""
    noun = rng.choice(sorted(NOUNS))
    src, slots = ["el", noun], [[("the",)]]
    if rng.random() < adjective_rate:
        adj = rng.choice(sorted(ADJECTIVES))
        src.append(adj)
        slots.append(ADJECTIVES[adj])
    slots.append(NOUNS[noun])
    return src, slots


def grammar_sentence(rng: np.random.Generator, adjective_rate: float = 0.5, adverb_rate: float = 0.5):
    """One source sentence (list of words) and its valid translations (list of word tuples)."""
    s1, slots1 = _phrase(rng, adjective_rate)
    verb = rng.choice(sorted(VERBS))
    s2, slots2 = _phrase(rng, adjective_rate)
    src = s1 + [verb] + s2
    body = [tuple(itertools.chain(*combo)) for combo in itertools.product(*slots1, VERBS[verb], *slots2)]
    adverb = rng.choice(sorted(ADVERBS)) if rng.random() < adverb_rate else None
    if adverb is None:
        return src, body
    src.append(adverb)
    if adverb == "hoy":
        return src, [t for b in body for t in (b + ("today",), ("today",) + b)]
    return src, [t for b in body for t in (b + ("now",), b + ("right", "now"))]


def generate_pairs(cfg, seed: int) -> Tuple[Dict[str, List[str]], List[str]]:
    """{source sentence: its valid translations} for train_size + test_size distinct sources whose
    valid sets have at most cfg.max_valid translations, and the test sources (drawn last)."""
    rng = np.random.default_rng(seed)
    pairs: Dict[str, List[str]] = {}
    want = cfg.train_size + cfg.test_size
    tries = 0
    while len(pairs) < want:
        tries += 1
        if tries > 50 * want:
            raise UserError(f"dataset.train_size + dataset.test_size = {want}: the grammar has too few distinct "
                            f"sentences with at most dataset.max_valid={cfg.max_valid} translations")
        src, targets = grammar_sentence(rng, cfg.adjective_rate, cfg.adverb_rate)
        if len(targets) > cfg.max_valid:
            continue
        pairs.setdefault(" ".join(src), sorted({" ".join(t) for t in targets}))
    test = list(pairs)[cfg.train_size:]
    return pairs, test


def load_tsv(path: str) -> Dict[str, List[str]]:
    """{source: [valid targets]} from a DESIGN.md TSV; a malformed line is named."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    pairs: Dict[str, List[str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{path}: line {number}: expected source<TAB>target, got {len(fields) - 1} tabs: {line[:60]!r}")
        src, tgt = (" ".join(f.split()) for f in fields)
        if not src or not tgt:
            raise UserError(f"{path}: line {number}: empty {'source' if not src else 'target'}: {line[:60]!r}")
        if tgt not in pairs.setdefault(src, []):
            pairs[src].append(tgt)
    if not pairs:
        raise UserError(f"{path}: no source<TAB>target lines")
    return pairs


def _encode(sentences: Sequence[str], vocab: Dict[str, int], length: int, end: bool) -> torch.Tensor:
    out = torch.zeros(len(sentences), length, dtype=torch.long)  # 0 = PAD
    for i, s in enumerate(sentences):
        ids = [vocab[w] for w in s.split()] + ([vocab[EOS]] if end else [])
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def load_translation(cfg, seed: Optional[int]) -> TranslationData:
    """Generate (cfg.path None) or load the pairs; split the distinct sources into train and test."""
    seed = cfg.seed if getattr(cfg, "seed", None) is not None else (seed or 0)
    if cfg.path is None:
        pairs, test = generate_pairs(cfg, seed)
        source = "generated"
    else:
        if not os.path.isfile(cfg.path):
            raise UserError(f"dataset.path={cfg.path}: no such file")
        pairs = load_tsv(cfg.path)
        if len(pairs) < 2:
            raise UserError(f"{cfg.path}: needs at least 2 distinct sources (some to train on, some to test)")
        order = np.random.default_rng(seed).permutation(len(pairs))
        names = list(pairs)
        n_test = max(1, int(round(cfg.test_fraction * len(pairs))))
        test = [names[i] for i in order[:n_test]]
        source = cfg.path
    test_set = set(test)
    train = [s for s in pairs if s not in test_set]
    src_words = sorted({w for s in pairs for w in s.split()})
    tgt_words = sorted({w for ts in pairs.values() for t in ts for w in t.split()})
    src_vocab, tgt_vocab = [SRC_PAD, *src_words], [PAD, EOS, *tgt_words]
    s_index = {w: i for i, w in enumerate(src_vocab)}
    t_index = {w: i for i, w in enumerate(tgt_vocab)}
    src_len = max(len(s.split()) for s in pairs)
    tgt_len = max(len(t.split()) for ts in pairs.values() for t in ts) + 1  # + EOS
    rows = [(s, t) for s in train for t in pairs[s]]  # one training row per valid target
    v = max(len(pairs[s]) for s in test)
    valid = torch.zeros(len(test), v, tgt_len, dtype=torch.long)
    mask = torch.zeros(len(test), v, dtype=torch.bool)
    for i, s in enumerate(test):
        valid[i, : len(pairs[s])] = _encode(pairs[s], t_index, tgt_len, end=True)
        mask[i, : len(pairs[s])] = True
    return TranslationData(
        x_train=_encode([s for s, _ in rows], s_index, src_len, end=False),
        y_train=_encode([t for _, t in rows], t_index, tgt_len, end=True),
        x_test=_encode(test, s_index, src_len, end=False),
        valid=valid, valid_mask=mask, src_vocab=src_vocab, tgt_vocab=tgt_vocab, source=source)
