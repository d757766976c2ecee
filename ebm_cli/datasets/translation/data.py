"""Translation pairs from a UTF-8 TSV (`source<TAB>target` per line; a repeated source has several
valid targets; blank lines and lines starting with `#` are skipped), and their token ids."""

import unicodedata
from typing import Dict, List, Sequence

import torch

from ebm_cli.errors import UserError

PAD, EOS = "<pad>", "<eos>"  # target symbols: index 0 pads, index 1 ends a sentence
SRC_PAD = "<pad>"
# Words a sentence may have: the chain energy pads every target to the longest and runs its dynamic
# programme over every position, so one runaway line (a whole text on one line) would size the model.
MAX_WORDS = 200
TAB = "\t"


def load_tsv(path: str) -> Dict[str, List[str]]:
    """{source: [valid targets]} from a TSV of source<TAB>target lines; a malformed line is named.

    A byte-order mark (Notepad's, Excel's UTF-8) is not part of the first source; words are compared
    in Unicode's composed form (NFC: "niña" typed with a combining tilde is the same word), and the
    empty columns a spreadsheet leaves after the target are dropped."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    pairs: Dict[str, List[str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = unicodedata.normalize("NFC", line).split(TAB)
        while len(fields) > 2 and not fields[-1].strip():
            fields.pop()
        if len(fields) != 2:
            raise UserError(f"{path}: line {number}: expected source<TAB>target, got {line.count(TAB)} tabs: {line[:60]!r}")
        src, tgt = (" ".join(f.split()) for f in fields)
        if not src or not tgt:
            raise UserError(f"{path}: line {number}: empty {'source' if not src else 'target'}: {line[:60]!r}")
        longest = max(len(src.split()), len(tgt.split()))
        if longest > MAX_WORDS:
            raise UserError(f"{path}: line {number}: a sentence of {longest} words (at most {MAX_WORDS}: one pair per "
                            f"line, a sentence each side): {line[:60]!r}")
        reserved = [w for w in (*src.split(), *tgt.split()) if w in (PAD, EOS)]
        if reserved:
            raise UserError(f"{path}: line {number}: {reserved[0]} is reserved (padding / end of sentence): {line[:60]!r}")
        if tgt not in pairs.setdefault(src, []):
            pairs[src].append(tgt)
    if not pairs:
        raise UserError(f"{path}: no source<TAB>target lines")
    return pairs


def encode(sentences: Sequence[str], vocab: Dict[str, int], length: int, end: bool) -> torch.Tensor:
    """Sentences as ids (len(sentences), length), 0-padded; end: append the end-of-sentence id."""
    out = torch.zeros(len(sentences), length, dtype=torch.long, device="cpu")  # 0 = PAD; on the host, as the data
    for i, s in enumerate(sentences):
        ids = [vocab[w] for w in s.split()] + ([vocab[EOS]] if end else [])
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long, device="cpu")
    return out


def decode(ids: Sequence[int], vocab: Sequence[str]) -> str:
    """Target ids -> the sentence (up to EOS)."""
    words = []
    for i in ids:
        if int(i) <= 1:  # PAD or EOS
            break
        words.append(vocab[int(i)])
    return " ".join(words)
