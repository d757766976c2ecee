"""Write a small parallel corpus from one of several toy grammars of their own, in the runner's TSV
format (source<TAB>target; a source on several lines has several valid translations).

    python experiments/translation_latent/make_grammar_tsv.py de_en.tsv --grammar de_en --sources 160
    python experiments/translation_latent/make_grammar_tsv.py ja_en.tsv --grammar ja_en --sources 160
    python experiments/translation_latent/make_grammar_tsv.py es_en.tsv --grammar es_en --sources 160
    python experiments/translation_latent/make_grammar_tsv.py nl_en.tsv --grammar nl_en --sources 160
    python experiments/translation_latent/make_grammar_tsv.py ru_en.tsv --grammar ru_en --sources 160
    python experiments/translation_latent/make_grammar_tsv.py tr_en.tsv --grammar tr_en --sources 160

Each grammar has its own words and its own reasons for several translations, unrelated to the
built-in grammar and to make_tsv.py:

- de_en (German-like, verb second): a fronted time adverb (heute: "today" first or last), an
  optional particle (jetzt: "now" | "right now"), verb synonyms (sieht: sees | watches).
- ja_en (Japanese-like, verb last, no articles): a bare noun is "the" or "a" noun; a politeness
  ending (-masu) leaves the meaning; verb synonyms (taberu: eats | is eating).
- es_en (Spanish-like, adjectives after the noun): an adjective's synonyms (rapido: fast | quick),
  a manner adverb at the end or before the verb (despacio: "slowly").
- nl_en (Dutch-like, verb second, separable verbs): the particle at the clause's end in Dutch goes
  before or after the object in English (picks up the key | picks the key up); a fronted
  "gisteren" turns the verb to the past tense and "yesterday" goes first or last.
- ru_en (Russian-like, no articles, case endings): the object is "a" or "the" thing; the source's
  object-verb-subject order means what subject-verb-object means; aspect (reads | is reading).
- tr_en (Turkish-like, verb last): aspect (is reading | reads), "bugun" (today) first or last.

nl_en, ru_en and tr_en were written after the inference rule for a mode split between two
sentences (`inference.split_prob`) was chosen on de_en, es_en and ja_en, to check it.

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


def nl_en():
    subjects = {"de hond": "the dog", "de kat": "the cat", "de vrouw": "the woman", "de jongen": "the boy",
                "het meisje": "the girl", "de bakker": "the baker"}
    # present, past; a separable verb's particle goes to the end of the Dutch clause, and English
    # takes it before or after a noun object ("picks up the key" | "picks the key up")
    verbs = {("pakt", "pakte", "op"): ("picks", "picked", "up"), ("ziet", "zag", None): ("sees", "saw", None),
             ("leest", "las", None): ("reads", "read", None),
             ("brengt", "bracht", "terug"): ("brings", "brought", "back")}
    objects = {"het boek": "the book", "de brief": "the letter", "de sleutel": "the key", "de tas": "the bag",
               "het kopje": "the cup"}
    for subj, (verb, verb_past, particle), obj, yesterday in itertools.product(subjects, verbs, objects, [False, True]):
        present, past, en_particle = verbs[(verb, verb_past, particle)]
        tail = f" {particle}" if particle else ""
        # verb second: a fronted "gisteren" puts the verb (in the past tense) before the subject
        source = f"gisteren {verb_past} {subj} {obj}{tail}" if yesterday else f"{subj} {verb} {obj}{tail}"
        v, s, o = (past if yesterday else present), subjects[subj], objects[obj]
        clauses = [f"{s} {v} {en_particle} {o}", f"{s} {v} {o} {en_particle}"] if en_particle else [f"{s} {v} {o}"]
        targets = [t for c in clauses for t in ((f"yesterday {c}", f"{c} yesterday") if yesterday else (c,))]
        yield source, targets


def ru_en():
    subjects = {"koshka": "cat", "sobaka": "dog", "malchik": "boy", "devochka": "girl", "uchitel": "teacher",
                "vrach": "doctor"}
    verbs = {"chitaet": ["reads", "is reading"], "vidit": ["sees"], "pishet": ["writes", "is writing"],
             "derzhit": ["holds"]}
    objects = {"knigu": "book", "pismo": "letter", "gazetu": "newspaper", "zhurnal": "magazine", "kartu": "map"}
    # no articles: the object is "a" or "the" thing; the case endings free the word order, so
    # object-verb-subject means what subject-verb-object means
    for subj, verb, obj, inverted in itertools.product(subjects, verbs, objects, [False, True]):
        source = f"{obj} {verb} {subj}" if inverted else f"{subj} {verb} {obj}"
        yield source, [f"the {subjects[subj]} {v} {art} {objects[obj]}" for v in verbs[verb] for art in ("a", "the")]


def tr_en():
    subjects = {"ali": "ali", "ayse": "ayse", "mehmet": "mehmet", "zeynep": "zeynep", "emre": "emre"}
    verbs = {"okuyor": ["is reading", "reads"], "goruyor": ["sees"], "yaziyor": ["is writing", "writes"],
             "aliyor": ["buys", "is buying"]}
    objects = {"kitabi": "the book", "mektubu": "the letter", "elmayi": "the apple", "arabayi": "the car",
               "evi": "the house"}
    # verb last; "bugun" (today) stands before the object and goes first or last in English
    for subj, verb, obj, today in itertools.product(subjects, verbs, objects, [False, True]):
        source = f"{subj} bugun {obj} {verb}" if today else f"{subj} {obj} {verb}"
        clauses = [f"{subjects[subj]} {v} {objects[obj]}" for v in verbs[verb]]
        yield source, [t for c in clauses for t in ((f"today {c}", f"{c} today") if today else (c,))]


GRAMMARS = {"de_en": de_en, "ja_en": ja_en, "es_en": es_en, "nl_en": nl_en, "ru_en": ru_en, "tr_en": tr_en}


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
