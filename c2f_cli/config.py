"""Every default of c2f, in frozen dataclasses: one commented default per line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the U-Net; stored in the weights' metadata."""

    num_classes: int = 6  # FASSEG: background, hair, skin, eyes, nose, mouth
    use_coarse: bool = True  # False = the RGB-only baseline (`--mode segment`)
    width: int = 16  # channels of the first level; doubled at each level
    depth: int = 4  # number of 2x downsamplings

    @property
    def in_channels(self) -> int:
        """RGB plus one channel per class of the coarse map when conditioned."""
        return 3 + (self.num_classes if self.use_coarse else 0)
