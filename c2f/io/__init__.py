"""Files in and out: photos, label sets, label maps, check images, atomic writes, pairing by stem.

Arrays leaving this package: photos are uint8 (H, W, 3) RGB; label maps are
uint8 (uint16 above 256 classes) (H, W) class ids in [0, K).
"""
