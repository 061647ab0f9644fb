"""From a photo and its coarse map to class probabilities: predictors, tiling, post-processing.

Every backend (torch, ONNX Runtime) only turns a float32 (N, C, h, w) batch into
logits; windowing, stitching, smoothing and argmax are written once, here.
"""
