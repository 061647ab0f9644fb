"""c2f: refine coarse segmentation maps into fine ones with a conditional U-Net."""
