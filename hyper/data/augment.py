"""Per-batch image transforms on tensors: vectorised, so they run on whatever device holds the batch.

Images travel from the loaders as uint8 ``(B, C, H, W)`` (a quarter of the bytes of float32)
and become normalised float32 only here, after the transfer to the device.
"""
import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(
    images: Tensor, *, padding: int, flip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Zero-pad each image by ``padding``, crop back to its size at a random offset, mirror half.

    One offset and one coin per image, applied by indexing a view of all windows: no loop over
    the batch, one copy of the batch.

    Args:
        images: (B, C, H, W), any dtype; zero padding means black for raw pixels.
        padding: pixels added on every side; offsets are drawn from [0, 2 * padding].
        flip: mirror each image left-right with probability 1/2.
        generator: random source on the images' device (the global one when None).

    Returns:
        (B, C, H, W), same dtype and device.
    """
    if padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding}")
    b, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    # every H×W window of every image, as a view: (B, C, 2p+1, 2p+1, H, W)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)
    top = torch.randint(0, 2 * padding + 1, (b,), device=device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (b,), device=device, generator=generator)
    crops = windows[torch.arange(b, device=device), :, top, left]  # (B, C, H, W)
    if flip:
        mirror = torch.rand(b, device=device, generator=generator) < 0.5
        crops = torch.where(mirror.view(b, 1, 1, 1), crops.flip(3), crops)
    return crops


def normalize(images: Tensor, *, mean: Tensor, std: Tensor) -> Tensor:
    """(B, C, H, W) raw pixels → float32 ``(x - mean) / std``; mean and std are (C,) in pixel units."""
    mean = mean.to(images.device, torch.float32).view(1, -1, 1, 1)  # no copy when already there
    std = std.to(images.device, torch.float32).view(1, -1, 1, 1)
    return (images.float() - mean) / std
