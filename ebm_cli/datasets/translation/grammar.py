"""A small synchronous grammar (a Spanish-like source, an English-like target) whose every source
sentence has a known set of valid translations: synonyms, an optional word and word orders."""

import itertools
from typing import Dict, List, Tuple

import numpy as np

from ebm_cli.errors import UserError

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


def generate_pairs(train_size: int, test_size: int, max_valid: int, adjective_rate: float, adverb_rate: float,
                   seed: int) -> Tuple[Dict[str, List[str]], List[str]]:
    """{source sentence: its valid translations} for train_size + test_size distinct sources whose
    valid sets have at most max_valid translations, and the test sources (drawn last)."""
    rng = np.random.default_rng(seed)
    pairs: Dict[str, List[str]] = {}
    want = train_size + test_size
    tries = 0
    while len(pairs) < want:
        tries += 1
        if tries > 50 * want:
            raise UserError(f"dataset.train_size + dataset.test_size = {want}: the grammar has too few distinct "
                            f"sentences with at most dataset.max_valid={max_valid} translations")
        src, targets = grammar_sentence(rng, adjective_rate, adverb_rate)
        if len(targets) > max_valid:
            continue
        pairs.setdefault(" ".join(src), sorted({" ".join(t) for t in targets}))
    test = list(pairs)[train_size:]
    return pairs, test



