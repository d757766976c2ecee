"""Every window of C + 1 consecutive frames of a uint8 clip file, read when a batch asks for it.

A Moving-MNIST-style array (T, N, H, W) holds N clips of T frames; each window of C context frames
and the frame after them is one training row, so a file holds N x (T - C) rows whose frames
overlap C + 1 times over. Kept as floats they would need 4 (C + 1) times the file's size (the
full-size Moving MNIST test file, 820 MB, would take 13 GB); here a row is an index (clip, first
frame), and a batch reads its frames from the file (the operating system's cache keeps the file
at hand; the process holds only the batch), decoded to floats.
"""

from typing import Tuple

import numpy as np
import torch


class ClipWindows:
    """Rows (clip n, start s) of uint8 clips (T, N, H, W): x = frames s .. s + C - 1 of clip n, y =
    frame s + C, both as floats in [0, 1].

    Args:
        clips: the (memory-mapped) uint8 array (T, N, H, W).
        clip: (R,) each row's clip.
        start: (R,) each row's first frame.
        context: C.
    """

    def __init__(self, clips: np.ndarray, clip: np.ndarray, start: np.ndarray, context: int):
        self.clips, self.context = clips, context
        self.clip, self.start = np.asarray(clip, np.int64), np.asarray(start, np.int64)

    def __len__(self) -> int:
        return len(self.clip)

    @property
    def frame_shape(self) -> Tuple[int, int]:
        return tuple(self.clips.shape[2:])

    def take(self, keep: np.ndarray) -> "ClipWindows":
        """The rows where keep (R,) is True, or those at the indices keep."""
        return ClipWindows(self.clips, self.clip[keep], self.start[keep], self.context)

    def read(self, idx: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rows idx (B,) -> x (B, C, H, W), y (B, H, W) float32 in [0, 1], on the host."""
        times = self.start[idx][:, None] + np.arange(self.context + 1)  # (B, C + 1)
        frames = self._frames(times * self.clips.shape[1] + self.clip[idx][:, None])  # (B, C + 1, H, W) uint8
        frames = torch.from_numpy(frames).float().div_(255.0)
        return frames[:, : self.context], frames[:, self.context]

    def _frames(self, which: np.ndarray) -> np.ndarray:
        """The frames at flat indices t * N + n (any shape S) -> (*S, H, W) uint8, read from the file
        one frame at a time (a memory-mapped file would count every page it ever touched as the
        process's own memory). An in-memory array (not a file) is indexed directly."""
        h, w = self.frame_shape
        if not isinstance(self.clips, np.memmap):
            return self.clips.reshape(-1, h, w)[which]
        size = h * w
        out = np.empty((*which.shape, h, w), np.uint8)
        view = memoryview(out.reshape(-1))
        with open(self.clips.filename, "rb", buffering=0) as fh:
            for i, frame in enumerate(which.reshape(-1).tolist()):
                fh.seek(self.clips.offset + frame * size)
                fh.readinto(view[i * size : (i + 1) * size])
        return out
