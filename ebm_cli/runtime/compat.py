"""Runs saved by an earlier version: the settings they lack, filled with what that version did.

A setting added later has a default that may change behaviour; a run saved before it existed was
trained, evaluated and is served as if it had the old value. Filling that value in (never today's
default) lets `task=infer` / `task=landscape` rebuild the run as it was trained, lets
`inference.<key>=...` on the command line change it, and lets a resume name the difference in one
line instead of "<unset> there".
"""

from typing import Any

# (config node, its _target_, the key added later, the value runs saved before it behaved as)
ADDED_SETTINGS = (
    ("energy", "ebm_cli.energies.mlp.MLPEnergy", "output", "linear"),  # F was the MLP itself
    ("inference", "ebm_cli.inference.dp.DPInference", "split_prob", 1.0),  # each mode's argmax only
)


def fill_added_settings(cfg: Any) -> None:
    """Fill, in place, the settings a saved run config (a dict or a DictConfig) lacks."""
    for node, target, key, value in ADDED_SETTINGS:
        section = cfg.get(node) if hasattr(cfg, "get") else None
        if hasattr(section, "get") and section.get("_target_") == target and key not in section:
            section[key] = value


def fill_added_meta(meta: Any) -> None:
    """Fill, in place, what a saved run's data arguments lack: a sequence space saved before it knew
    its end symbols gets the translation data's (<eos>, <pad>), so its paths read as the sentences
    they decode to."""
    space = meta.get("y_space") if hasattr(meta, "get") else None
    vocab = meta.get("tgt_vocab") if hasattr(meta, "get") else None
    if (isinstance(space, dict) and space.get("_target_") == "ebm_cli.core.spaces.SequenceSpace"
            and "eos" not in space and isinstance(vocab, (list, tuple)) and "<eos>" in vocab and "<pad>" in vocab):
        space["eos"], space["pad"] = vocab.index("<eos>"), vocab.index("<pad>")
