"""energy=frames: the frame energy chosen from the data.

Where every sprite looks the same (the generated squares, plus signs and diamonds), the decoder
only has to learn where the sprite goes: conv_latent does it at a third of the U-Net's cost. Where
the appearance varies from clip to clip (a user's clips, handwritten digits, glyphs), conv_latent
memorises the training sprites and draws a blur on new ones, while a U-Net that warps the last
context frame (unet_latent, decoder=warp) moves whatever is there (experiments/video_real,
experiments/moving_mnist). The data says which it is (Video's `appearance` argument: fixed for a
generated sprite shape, varies for a file or glyphs); `energy.appearance=fixed|varies` overrides it.
"""

from typing import Any, Dict, Optional, Tuple

from ebm_cli.core.energy import EnergyChoice
from ebm_cli.errors import require_choice

APPEARANCES = ("auto", "fixed", "varies")


class FrameEnergy(EnergyChoice):
    """Picks `fixed` or `varies`, each the node of a frame energy (`target:` and its arguments).

    Args:
        appearance: auto (from the data) | fixed | varies.
        fixed: the energy for sprites that all look the same.
        varies: the energy for sprites whose appearance varies.
        z, free_energy: the latent z and how it is eliminated, given to the chosen energy.
    """

    options = ("fixed", "varies")

    def __init__(self, appearance: str = "auto", fixed: Optional[Dict[str, Any]] = None,
                 varies: Optional[Dict[str, Any]] = None, z=None, free_energy=None):
        require_choice("appearance", appearance, APPEARANCES)

    @classmethod
    def choose(cls, node: dict, meta: dict) -> Tuple[str, str]:
        asked = node.get("appearance", "auto")
        require_choice("appearance", asked, APPEARANCES)
        if asked != "auto":
            return asked, f"energy.appearance={asked}"
        found = meta.get("appearance", "varies")
        why = {"fixed": "every generated sprite looks the same", "varies": "the sprites' appearance varies"}[found]
        other = "fixed" if found == "varies" else "varies"
        return found, f"{why}; energy.appearance={other} for the other one"
