"""Image folders for tests and benchmarks: scikit-learn's bundled digits written as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digits_pngs(
    folder: Path, n: int | None = None, size: int = 8, class_folders: bool = True, start: int = 0
) -> list[Path]:
    """Write ``n`` digits from index ``start`` as 8-bit grayscale PNGs (``folder/<digit>/digit-NNNNN.png``,
    or flat), upscaled to ``size``×``size`` when asked; returns the paths."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    stop = None if n is None else start + n
    images, targets = d.images[start:stop], d.target[start:stop]
    paths = []
    for i, (img, label) in enumerate(zip(images, targets, strict=True)):
        out = folder / str(label) if class_folders else folder
        out.mkdir(parents=True, exist_ok=True)
        pic = Image.fromarray(np.round(img * 255 / 16).astype(np.uint8), mode="L")
        if size != 8:
            pic = pic.resize((size, size), Image.Resampling.NEAREST)
        path = out / f"digit-{start + i:05d}.png"
        pic.save(path)
        paths.append(path)
    return paths
