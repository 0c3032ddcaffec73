"""Image grids: `[-1, 1]` images to `uint8` pixels, tiled into one image or PNG.

Used by `keras_gcm.callbacks.SampleGrid` and the image recipes; plain numpy.
"""

import math
import os

import numpy as np
import keras


def images_to_uint8(images):
    """Maps images in `[-1, 1]` to `uint8` pixels: `round((x + 1) * 127.5)`, clipped.

    Args:
        images: float array-like of any shape, nominally in `[-1, 1]`
            (values outside are clipped; NaN becomes 0).

    Returns:
        A `uint8` numpy array of the same shape.

    Example:

    >>> keras_gcm.utils.images_to_uint8(np.array([-1.0, 0.0, 1.0]))
    array([  0, 128, 255], dtype=uint8)
    """
    x = np.asarray(keras.ops.convert_to_numpy(images), np.float64)
    x = np.nan_to_num(x, nan=-1.0, posinf=1.0, neginf=-1.0)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images, nrow=None, padding=1, pad_value=128, scale=1):
    """Tiles a batch of images in `[-1, 1]` into one `uint8` image.

    Args:
        images: `(N, H, W, C)` (C = 1 or 3) or `(N, H, W)` images in `[-1, 1]`.
        nrow: images per row (default `ceil(sqrt(N))`).
        padding: pixels between images and around the grid.
        pad_value: `uint8` value of the padding (128: mid grey).
        scale: integer nearest-neighbour upscaling of each image (small
            images such as 8x8 digits are easier to look at with 4).

    Returns:
        A `uint8` array of shape `(rows * (H*scale + padding) + padding,
        nrow * (W*scale + padding) + padding, C)`, `rows = ceil(N / nrow)`,
        image `i` in row `i // nrow`, column `i % nrow`.

    Example:

    >>> grid = keras_gcm.utils.image_grid(np.zeros((6, 8, 8, 1)), nrow=3, padding=1)
    >>> grid.shape
    (19, 28, 1)
    """
    x = images_to_uint8(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] < 1:
        raise ValueError(
            "`images` must be a non-empty batch of shape (N, H, W, C) with C = 1 "
            f"or 3 (or (N, H, W)); got shape {tuple(np.shape(images))}."
        )
    scale, padding = int(scale), int(padding)
    if scale < 1 or padding < 0:
        raise ValueError(f"`scale` must be >= 1 and `padding` >= 0; got {scale}, {padding}.")
    if scale > 1:
        x = x.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = x.shape
    nrow = int(nrow) if nrow else int(math.ceil(math.sqrt(n)))
    if nrow < 1:
        raise ValueError(f"`nrow` must be >= 1; got {nrow}.")
    rows = int(math.ceil(n / nrow))
    grid = np.full(
        (rows * (h + padding) + padding, nrow * (w + padding) + padding, c),
        pad_value, np.uint8,
    )
    for i in range(n):
        top = padding + (i // nrow) * (h + padding)
        left = padding + (i % nrow) * (w + padding)
        grid[top:top + h, left:left + w] = x[i]
    return grid


def save_image_grid(images, path, nrow=None, padding=1, pad_value=128, scale=1):
    """Writes a batch of images in `[-1, 1]` as one PNG grid (see `image_grid`).

    Uses Pillow (a dependency of keras_gcm and of matplotlib); grayscale images are written as
    8-bit grayscale PNGs, RGB as RGB.

    Args:
        images: `(N, H, W, C)` or `(N, H, W)` images in `[-1, 1]`.
        path: output file (`.png`); its folder is created if needed.
        nrow, padding, pad_value, scale: as in `image_grid`.

    Returns:
        The `uint8` grid array that was written.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> images = np.linspace(-1.0, 1.0, 4 * 8 * 8).reshape(4, 8, 8, 1)
    >>> keras_gcm.utils.save_image_grid(images, path, nrow=2, scale=2).shape
    (35, 35, 1)
    >>> os.path.exists(path)
    True
    """
    grid = image_grid(images, nrow=nrow, padding=padding, pad_value=pad_value, scale=scale)
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        import matplotlib.image

        matplotlib.image.imsave(
            path, grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray",
            vmin=0, vmax=255,
        )
        return grid
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return grid
