"""Write a toy French -> English corpus in the runner's TSV format (source<TAB>target per line;
a source repeated on several lines has several valid translations).

    python experiments/translation_latent/make_tsv.py fr_en.tsv
    python experiments/translation_latent/make_tsv.py small.tsv --sources 150   # a few hundred pairs

Its own words and constructions, unrelated to the built-in grammar: synonyms of one or two words
(mange: eats | is eating; voit: sees | spots; aime: likes | loves) and a word order (aussi: "also"
before the verb | "too" at the end). `ebm-run experiment=translation_latent
dataset.path=fr_en.tsv` reads it like any user's pairs.
"""

import argparse
import itertools
import random

SUBJECTS = {"le chat": "the cat", "le chien": "the dog", "la fille": "the girl", "le loup": "the wolf",
            "la vache": "the cow", "le lapin": "the rabbit", "la souris": "the mouse"}
VERBS = {"mange": ["eats", "is eating"], "voit": ["sees", "spots"], "suit": ["follows"], "cherche": ["looks for"],
         "aime": ["likes", "loves"]}
OBJECTS = {"la pomme": "the apple", "le pain": "the bread", "la maison": "the house", "le fromage": "the cheese",
           "le jardin": "the garden", "la porte": "the door"}


def translations(subj, verb, obj, extra):
    """The valid English translations of one French sentence."""
    out = []
    for v in VERBS[verb]:
        base = f"{SUBJECTS[subj]} {v} {OBJECTS[obj]}"
        if extra == "aussi":
            out += [f"{SUBJECTS[subj]} also {v} {OBJECTS[obj]}", f"{base} too"]
        else:
            out.append(base)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--sources", type=int, default=None,
                        help="keep this many of the 420 sentences, drawn at random (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    lines = ["# toy French -> English; repeated sources are several valid translations"]
    sentences = list(itertools.product(SUBJECTS, VERBS, OBJECTS, [None, "aussi"]))
    if a.sources is not None and not 1 <= a.sources <= len(sentences):
        raise SystemExit(f"--sources {a.sources}: must be between 1 and {len(sentences)}")
    random.Random(a.seed).shuffle(sentences)
    sentences = sentences[: a.sources]
    for subj, verb, obj, extra in sentences:
        source = f"{subj} {verb} {obj}" + (" aussi" if extra else "")
        lines += [f"{source}\t{t}" for t in translations(subj, verb, obj, extra)]
    with open(a.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {a.path}: {len(sentences)} sources, {len(lines) - 1} pairs")


if __name__ == "__main__":
    main()
