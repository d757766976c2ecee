"""Translations as TensorBoard text: for a few held-out sources, the valid set and the output of
each mode z with its energy (Viterbi per z), marked when it is one of the valid translations."""

from typing import Dict

import torch

from ebm_cli.core.energy import ChainEnergy
from ebm_cli.dynamic_programming import forward_free_energy, viterbi


@torch.no_grad()
def translation_table(energy, data, examples: int, device) -> str:
    """A markdown table: source | valid translations | z | output | E(x, y, z) | -log P(y | x, z) | valid?"""
    n = min(examples, len(data.x_test))
    x = data.x_test[:n].to(device)
    u, p = energy.flat_potentials(x)
    e, paths = viterbi(u, p)
    nll = (e - forward_free_energy(u, p, 1.0)).view(n, energy.k).cpu()  # -log P(y | x, z)
    e, paths = e.view(n, energy.k).cpu(), paths.view(n, energy.k, -1).cpu()
    lines = ["| source | valid translations | z | output | E(x, y, z) | -log P(y \\| x, z) | valid |",
             "|---|---|---|---|---|---|---|"]
    for i in range(n):
        valid = [data.decode(v) for v, m in zip(data.valid[i], data.valid_mask[i]) if m]
        for z in range(energy.k):
            out = data.decode(paths[i, z])
            first = z == 0
            lines.append(f"| {data.source_text(data.x_test[i]) if first else ''} | {' / '.join(valid) if first else ''} "
                         f"| {z} | {out} | {float(e[i, z]):.3g} | {float(nll[i, z]):.3g} | {'yes' if out in valid else 'no'} |")
    return "\n".join(lines)


def translation_texts(energy, data, logger_cfg, device) -> Dict[str, str]:
    """{"translations": the table} for a chain energy (its modes are what the table shows)."""
    if not isinstance(energy, ChainEnergy):
        return {}
    was_training = energy.training
    energy.eval()
    texts = {"translations": translation_table(energy, data, logger_cfg.text_examples, device)}
    energy.train(was_training)
    return texts
