"""Learning the coarse-to-fine step: samples, augmentation, run state, the epoch loop, the GAN strategy."""
