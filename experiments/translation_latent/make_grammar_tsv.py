"""Write a small parallel corpus from one of several toy grammars of their own, in the runner's TSV
format (source<TAB>target; a source on several lines has several valid translations).

    python experiments/translation_latent/make_grammar_tsv.py de_en.tsv --grammar de_en --sources 160
    python experiments/translation_latent/make_grammar_tsv.py ja_en.tsv --grammar ja_en --sources 160
    python experiments/translation_latent/make_grammar_tsv.py es_en.tsv --grammar es_en --sources 160

Each grammar has its own words and its own reasons for several translations, unrelated to the
built-in grammar and to make_tsv.py:

- de_en (German-like, verb second): a fronted time adverb (heute: "today" first or last), an
  optional particle (jetzt: "now" | "right now"), verb synonyms (sieht: sees | watches).
- ja_en (Japanese-like, verb last, no articles): a bare noun is "the" or "a" noun; a politeness
  ending (-masu) leaves the meaning; verb synonyms (taberu: eats | is eating).
- es_en (Spanish-like, adjectives after the noun): an adjective's synonyms (rapido: fast | quick),
  a manner adverb at the end or before the verb (despacio: "slowly").

The sentences are drawn at random without repeats; the runner holds out dataset.test_fraction of
the sources, which are then new combinations of words seen in training.
"""

import argparse
import itertools
import random


def de_en():
    subjects = {"der hund": "the dog", "die katze": "the cat", "der mann": "the man", "die frau": "the woman",
                "das kind": "the child", "der lehrer": "the teacher"}
    verbs = {"sieht": ["sees", "watches"], "ruft": ["calls"], "sucht": ["looks for", "searches for"], "hoert": ["hears"]}
    objects = {"den ball": "the ball", "das haus": "the house", "den baum": "the tree", "die tuer": "the door",
               "den vogel": "the bird"}
    extras = [None, "heute", "jetzt"]
    for subj, verb, obj, extra in itertools.product(subjects, verbs, objects, extras):
        s, o = subjects[subj], objects[obj]
        if extra == "heute":  # verb second: the verb comes before the subject
            source = f"heute {verb} {subj} {obj}"
            targets = [t for v in verbs[verb] for t in (f"today {s} {v} {o}", f"{s} {v} {o} today")]
        elif extra == "jetzt":
            source = f"{subj} {verb} jetzt {obj}"
            targets = [f"{s} {v} {o} {n}" for v in verbs[verb] for n in ("now", "right now")]
        else:
            source = f"{subj} {verb} {obj}"
            targets = [f"{s} {v} {o}" for v in verbs[verb]]
        yield source, targets


def ja_en():
    nouns = {"inu": "dog", "neko": "cat", "tori": "bird", "sakana": "fish", "kodomo": "child", "sensei": "teacher"}
    things = {"ringo": "apple", "pan": "bread", "hon": "book", "mizu": "water", "kuruma": "car"}
    verbs = {"taberu": ["eats", "is eating"], "miru": ["sees"], "motsu": ["holds", "has"], "kau": ["buys"]}
    for subj, obj, verb, polite in itertools.product(nouns, things, verbs, [False, True]):
        ending = verb[:-1] + "imasu" if polite else verb  # the polite form: same meaning
        source = f"{subj} ga {obj} o {ending}"
        articles = ("the", "a") if subj in ("inu", "neko") else ("the",)  # a bare noun: "the" or "a"
        targets = [f"{art} {nouns[subj]} {v} the {things[obj]}" for art in articles for v in verbs[verb]]
        yield source, targets


def es_en():
    things = {"el coche": "car", "el tren": "train", "el barco": "boat", "la moto": "motorbike", "el avion": "plane"}
    adjectives = {"rapido": ["fast", "quick"], "rojo": ["red"], "viejo": ["old"], "nuevo": ["new"]}
    verbs = {"llega": "arrives", "sale": "leaves", "para": "stops", "gira": "turns"}
    for thing, adj, verb, slow in itertools.product(things, adjectives, verbs, [False, True]):
        source = f"{thing} {adj} {verb}" + (" despacio" if slow else "")
        targets = []
        for a in adjectives[adj]:
            base = f"the {a} {things[thing]}"
            targets += [f"{base} {verbs[verb]} slowly", f"{base} slowly {verbs[verb]}"] if slow else [f"{base} {verbs[verb]}"]
        yield source, targets


GRAMMARS = {"de_en": de_en, "ja_en": ja_en, "es_en": es_en}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--grammar", choices=sorted(GRAMMARS), required=True)
    parser.add_argument("--sources", type=int, default=None, help="keep this many sentences, drawn at random")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    sentences = list(GRAMMARS[a.grammar]())
    if a.sources is not None and not 1 <= a.sources <= len(sentences):
        raise SystemExit(f"--sources {a.sources}: must be between 1 and {len(sentences)}")
    random.Random(a.seed).shuffle(sentences)
    sentences = sentences[: a.sources]
    lines = [f"# {a.grammar}: repeated sources are several valid translations"]
    lines += [f"{source}\t{target}" for source, targets in sentences for target in targets]
    with open(a.path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {a.path}: {len(sentences)} of {len(list(GRAMMARS[a.grammar]()))} sources, {len(lines) - 1} pairs")


if __name__ == "__main__":
    main()
