"""A small conv VAE: latent frames <-> pixel frames (4 frames, 8x spatial per latent frame).

Frames are folded into the batch and handled by 2D convolutions; the decoder's last
convolution emits 4 pixel frames per latent frame as channels, the encoder folds 4
pixel frames back into channels, so ``encode(decode(z))`` has ``z``'s shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipefill.exec.kernels.nn import Conv2d, ModelSize

#: pixel frames per latent frame and spatial upsampling of the decoder
TIME_UP, SPACE_UP = 4, 8


class Decoder(nn.Module):
    """``(b, C, t, h, w)`` latents -> ``(b, 3, 4t, 8h, 8w)`` frames in [-1, 1]."""

    def __init__(self, size: ModelSize, gen: torch.Generator) -> None:
        super().__init__()
        ch = size.vae_channels
        self.conv_in = Conv2d(size.latent_channels, 4 * ch, gen)
        widths = [4 * ch, 2 * ch, ch, ch]
        self.ups = nn.ModuleList(Conv2d(widths[i], widths[i + 1], gen) for i in range(3))
        self.conv_out = Conv2d(ch, 3 * TIME_UP, gen)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = z.shape
        x = self.conv_in(z.transpose(1, 2).reshape(b * t, c, h, w))
        for conv in self.ups:
            x = F.silu(conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))
        x = torch.tanh(self.conv_out(x))
        x = x.view(b, t, TIME_UP, 3, h * SPACE_UP, w * SPACE_UP)
        return x.permute(0, 3, 1, 2, 4, 5).reshape(b, 3, t * TIME_UP, h * SPACE_UP, w * SPACE_UP)


class Encoder(nn.Module):
    """``(b, 3, f, H, W)`` frames -> ``(b, C, ceil(f/4), H/8, W/8)`` latents."""

    def __init__(self, size: ModelSize, gen: torch.Generator) -> None:
        super().__init__()
        ch = size.vae_channels
        self.conv_in = Conv2d(3 * TIME_UP, ch, gen)
        widths = [ch, ch, 2 * ch, 4 * ch]
        self.downs = nn.ModuleList(Conv2d(widths[i], widths[i + 1], gen, stride=2)
                                   for i in range(3))
        self.conv_out = Conv2d(4 * ch, size.latent_channels, gen)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, _, f, hh, ww = frames.shape
        pad = (-f) % TIME_UP
        if pad:  # repeat the last frame so every latent frame sees 4 pixel frames
            frames = torch.cat([frames, frames[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        t = frames.shape[2] // TIME_UP
        x = frames.view(b, 3, t, TIME_UP, hh, ww).permute(0, 2, 3, 1, 4, 5)
        x = F.silu(self.conv_in(x.reshape(b * t, 3 * TIME_UP, hh, ww)))
        for conv in self.downs:
            x = F.silu(conv(x))
        z = self.conv_out(x)
        return z.view(b, t, *z.shape[1:]).transpose(1, 2)
