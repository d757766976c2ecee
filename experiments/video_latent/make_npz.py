"""Write toy video clips in the runner's `.npz` format (context, futures, num_futures).

    python experiments/video_latent/make_npz.py plus.npz --sprite plus --sprite-size 5 --speed 4

The runner reads such a file with `ebm-run experiment=video_latent dataset.path=plus.npz`, the same
way as any user's clips: nothing in it is specific to this generator.
"""

import argparse

import numpy as np

from ebm_cli.datasets.video.data import generate_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--context", type=int, default=3)
    parser.add_argument("--moves", type=int, default=3)
    parser.add_argument("--sprite", default="plus", choices=["square", "plus", "diamond"])
    parser.add_argument("--sprite-size", type=int, default=5)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    a = parser.parse_args()
    context, futures, counts = generate_video(a.clips, a.size, a.context, a.moves, a.sprite, a.sprite_size, a.speed,
                                              noise=0.0, seed=a.seed)
    np.savez_compressed(a.path, context=context, futures=futures, num_futures=counts)
    print(f"wrote {a.path}: context {context.shape}, futures {futures.shape}")


if __name__ == "__main__":
    main()
