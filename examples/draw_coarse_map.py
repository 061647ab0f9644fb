"""Reframe the scikit-image astronaut portrait and draw a coarse map for it.

c2f refines coarse face segmentation maps into fine ones. To show that on an
image anyone may redistribute, this script takes the public-domain astronaut
portrait shipped with scikit-image (Eileen Collins, NASA) and draws, by hand, a
coarse map in the style of the FASSEG V1 coarse labels: rough, blocky polygons,
eyebrows counted as hair, and a nose that marks only the nostril area.

In the original 512x512 photo the face is tiny, while the model was trained on
FASSEG photos where the head fills most of a 512 px high frame. So the photo is
first cropped around the head (with a bit of neck and collar at the bottom) and
scaled to 512 px high, and the map is drawn on that reframed photo.

The coordinates below were chosen by looking at the reframed 416x512 photo;
they are (x, y) pixels, and "left" and "right" mean as seen in the image.

Outputs, written next to this script:
    astronaut.png         the reframed photo (416x512 RGB)
    astronaut_coarse.png  the colour-coded coarse map (416x512 RGB, palette colours only)

Run:
    python examples/draw_coarse_map.py
"""

from pathlib import Path

from PIL import Image, ImageDraw
from skimage import data

EXAMPLES_FOLDER = Path(__file__).resolve().parent

# Crop box (left, top, right, bottom) in the original 512x512 photo: from just
# above the hair to just below the chin where the collar starts, and just wider
# than the hair. Its 156x192 shape scales exactly to 416x512.
HEAD_BOX = (148, 8, 304, 200)
FRAME_HEIGHT = 512

# FASSEG colour code, in class order 0..5.
BACKGROUND = (255, 0, 0)
HAIR = (127, 0, 0)
SKIN = (255, 255, 0)
EYES = (0, 0, 255)
NOSE = (0, 255, 255)
MOUTH = (0, 255, 0)

# Outer outline of the hair. Drawn first, so the face painted on top of it
# leaves the hair only where it frames the forehead and the cheeks.
HAIR_OUTLINE = [
    (165, 30), (200, 22), (230, 20), (270, 25), (300, 35), (330, 55),
    (360, 80), (385, 105), (400, 135), (408, 165), (408, 200), (403, 225),
    (395, 250), (380, 280), (365, 300), (350, 315), (320, 310), (95, 310),
    (75, 300), (63, 297), (50, 285), (35, 268), (25, 245), (20, 220), (18, 190),
    (18, 160), (30, 130), (60, 100), (90, 75), (125, 48),
]

# Face and neck as one skin region. The neck stops at the black collar,
# because the spacesuit counts as background.
FACE_AND_NECK_OUTLINE = [
    (97, 205), (127, 188), (160, 188), (193, 197), (220, 193), (247, 200),
    (277, 207), (300, 210), (320, 222), (323, 250), (327, 290), (325, 320),
    (312, 350), (300, 405), (285, 445), (270, 462), (240, 475), (190, 482),
    (140, 475), (100, 465), (97, 420), (90, 350), (90, 290), (92, 250),
]

# Both ear lobes peek out below the hair.
LEFT_EAR_OUTLINE = [(92, 285), (75, 288), (63, 300), (68, 320), (80, 333), (93, 335)]
RIGHT_EAR_OUTLINE = [(322, 295), (338, 298), (348, 310), (343, 335), (330, 348), (318, 345)]

# Eyebrows are labelled as hair in FASSEG.
LEFT_EYEBROW_OUTLINE = [
    (108, 225), (120, 215), (145, 212), (172, 218), (170, 226), (145, 220), (112, 229),
]
RIGHT_EYEBROW_OUTLINE = [
    (238, 226), (260, 218), (285, 220), (308, 230), (305, 236), (282, 227), (242, 232),
]

# Bounding boxes (left, top, right, bottom) for the round-ish parts.
LEFT_EYE_BOX = (120, 238, 170, 257)
RIGHT_EYE_BOX = (233, 245, 293, 262)
NOSTRILS_BOX = (168, 314, 236, 337)

# The smile is too wide and curved for an ellipse.
MOUTH_OUTLINE = [
    (146, 350), (165, 352), (200, 355), (235, 352), (258, 351), (250, 368),
    (232, 382), (205, 391), (180, 388), (162, 375),
]


def load_photo():
    """Return the original 512x512 astronaut photo."""
    return Image.fromarray(data.astronaut())


def reframe(photo):
    """Crop the photo around the head and scale it to FASSEG's 512 px height."""
    head = photo.crop(HEAD_BOX)
    width = round(head.width * FRAME_HEIGHT / head.height)
    return head.resize((width, FRAME_HEIGHT), Image.LANCZOS)


def draw_coarse_map(width, height):
    """Return the coarse map as an RGB image, painted back to front."""
    coarse_map = Image.new("RGB", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(coarse_map)
    # ImageDraw never anti-aliases polygons or ellipses, so every pixel keeps
    # an exact palette colour and maps back to one class.
    pen.polygon(HAIR_OUTLINE, fill=HAIR)
    pen.polygon(FACE_AND_NECK_OUTLINE, fill=SKIN)
    pen.polygon(LEFT_EAR_OUTLINE, fill=SKIN)
    pen.polygon(RIGHT_EAR_OUTLINE, fill=SKIN)
    pen.polygon(LEFT_EYEBROW_OUTLINE, fill=HAIR)
    pen.polygon(RIGHT_EYEBROW_OUTLINE, fill=HAIR)
    pen.ellipse(LEFT_EYE_BOX, fill=EYES)
    pen.ellipse(RIGHT_EYE_BOX, fill=EYES)
    pen.ellipse(NOSTRILS_BOX, fill=NOSE)
    pen.polygon(MOUTH_OUTLINE, fill=MOUTH)
    return coarse_map


def main():
    photo = reframe(load_photo())
    photo.save(EXAMPLES_FOLDER / "astronaut.png", optimize=True)
    coarse_map = draw_coarse_map(*photo.size)
    coarse_map.save(EXAMPLES_FOLDER / "astronaut_coarse.png", optimize=True)


if __name__ == "__main__":
    main()
