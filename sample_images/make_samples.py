"""Derive the sample images that are not originals (run from this folder: python make_samples.py).

chelsea.png and camera.png are CC0 photographs copied from scikit-image's bundled data; the rest
is computed from them or from scratch here, so every file has a known source.
"""

from __future__ import annotations

import numpy as np
import tifffile
from PIL import Image

camera = np.asarray(Image.open("camera.png").convert("L"))
# 16-bit: the camera image spread over the full uint16 range (x257 maps 255 to 65535).
Image.fromarray(camera.astype(np.uint16) * 257).save("camera16.png")

# RGBA: a 256x256 crop of Chelsea with a soft round alpha (opaque centre, transparent corners).
cat = np.asarray(Image.open("chelsea.png").convert("RGB"))[20:276, 100:356]
yy, xx = np.mgrid[:256, :256]
r = np.hypot(yy - 127.5, xx - 127.5)
alpha = np.clip((140 - r) * 8, 0, 255).astype(np.uint8)
Image.fromarray(np.dstack([cat, alpha]), mode="RGBA").save("chelsea_rgba.png")

# 3-D: a 64^3 phantom of nested ellipsoids (after Shepp-Logan), uint8, one TIFF page per z-slice.
n = 64
z, y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j, -1 : 1 : n * 1j]
vol = np.zeros((n, n, n), np.float64)
for (cz, cy, cx), (az, ay, ax), value in [
    ((0, 0, 0), (0.9, 0.92, 0.69), 1.0),
    ((0, -0.0184, 0), (0.88, 0.874, 0.6624), -0.8),
    ((0, 0, 0.22), (0.5, 0.31, 0.11), -0.2),
    ((0, 0, -0.22), (0.5, 0.41, 0.16), -0.2),
    ((0.25, 0.35, 0), (0.3, 0.25, 0.21), 0.3),
    ((-0.25, 0.1, 0), (0.2, 0.046, 0.046), 0.4),
    ((0.1, -0.5, 0.1), (0.1, 0.1, 0.1), 0.5),
]:
    vol += value * ((((z - cz) / az) ** 2 + ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2) <= 1)
tifffile.imwrite("phantom3d.tif", np.clip(vol * 200, 0, 255).astype(np.uint8), photometric="minisblack")
