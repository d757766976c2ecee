"""Runs saved by an earlier version: the settings they lack, filled with what that version did.

A setting added later has a default that may change behaviour; a run saved before it existed was
trained and evaluated as if it had the old value. Checkpoints carry their format
(`CHECKPOINT_FORMAT`) from this version on; one without it was written before, and is rebuilt as
it ran (`task=infer`, `task=landscape`), with `inference.<key>=...` on the command line still
able to change the filled value. A resume compares configs with the same fill on both sides, so it
names the difference in one line instead of "<unset> there".
"""

from collections.abc import Mapping, MutableMapping
from typing import Any

CHECKPOINT_FORMAT = 2  # 1 (no "format" key): before the settings below were filled on load

# (config node, its _target_, the key added later, the value runs saved before it behaved as)
ADDED_SETTINGS = (
    ("energy", "ebm_cli.energies.mlp.MLPEnergy", "output", "linear"),  # F was the MLP itself
    ("inference", "ebm_cli.inference.dp.DPInference", "split_prob", 1.0),  # each mode's argmax only
)


def is_old(state: Mapping) -> bool:
    """A checkpoint written before its format was recorded (or with a format that is not one)."""
    written = state.get("format", 1)
    return not isinstance(written, int) or written < CHECKPOINT_FORMAT


def fill_added_settings(cfg: Any) -> None:
    """Fill, in place, the settings a saved run config (a dict or a DictConfig) lacks."""
    for node, target, key, value in ADDED_SETTINGS:
        section = cfg.get(node) if isinstance(cfg, Mapping) else None
        if isinstance(section, MutableMapping) and section.get("_target_") == target and key not in section:
            section[key] = value


def fill_added_meta(meta: Any, cfg: Any) -> None:
    """Fill, in place, what a saved translation run's data arguments lack: a sequence space saved
    before it knew its end symbols gets <eos> and <pad>, so its paths read as the sentences they
    decode to. cfg: the run's config (its dataset's _target_ says whether it is one)."""
    dataset = cfg.get("dataset") if isinstance(cfg, Mapping) else None
    target = dataset.get("_target_") if isinstance(dataset, Mapping) else None
    if target != "ebm_cli.datasets.translation.Translation" or not isinstance(meta, MutableMapping):
        return
    space, vocab = meta.get("y_space"), meta.get("tgt_vocab")
    if (isinstance(space, MutableMapping) and "eos" not in space and isinstance(vocab, (list, tuple))
            and "<eos>" in vocab and "<pad>" in vocab):
        space["eos"], space["pad"] = vocab.index("<eos>"), vocab.index("<pad>")
