"""Reference statistics for FID: a folder, a TensorFlow Datasets set or an `.npz`.

    python -m keras_gcm.metrics.fid_stats tfds:cifar10:train cifar10_train_fid.npz \\
        --inception-weights pt_inception-2015-12-05-6726825d.pth
    python -m keras_gcm.metrics.fid_stats my_images/ my_images_fid.npz \\
        --image-size 64 --inception-weights pt_inception-2015-12-05-6726825d.pth
    python -m keras_gcm.metrics.fid_stats faces.npz faces_fid.npz --inception-weights ...

The mean and covariance of the 2048-d pool3 features of every image of the
source are written with `keras_gcm.metrics.save_statistics` (keys `mu`,
`sigma`, as pytorch-fid and the TTUR code write them), ready for
`FrechetInceptionDistance.result(path)`. Images are read as uint8 and fed to
the network as `x / 127.5 - 1`, exactly the levels generated samples are
rounded to before the network (`FrechetInceptionDistance(quantize=True)`).
`--features digits` uses the 8x8 digits classifier's features instead of
Inception (no weight file; 8x8 grayscale images only): the Fréchet digits
distance of `keras_gcm.metrics.frechet_digits_distance`.
"""

import argparse
import os

import numpy as np

SOURCE_HELP = (
    "a folder of PNG / JPEG images (searched recursively), an .npz / .npy file of "
    "(N, H, W, C) images, or tfds:NAME[:SPLIT] (e.g. tfds:cifar10:train)"
)


def _tfds_images(spec, batch_size, data_dir=None):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise ValueError(
            f"A TensorFlow Datasets source is `tfds:NAME[:SPLIT]` (e.g. tfds:cifar10:train); "
            f"got {spec!r}."
        )
    name, split = parts[1], (parts[2] if len(parts) == 3 and parts[2] else "train")
    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
    ds = ds.map(lambda e: tf.cast(e["image"], tf.float32) / 127.5 - 1.0)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _first_image_size(path):
    from PIL import Image

    from keras_gcm.data import list_image_files

    files = list_image_files(path)
    if not files:
        raise ValueError(f"No image files found under {os.fspath(path)!r}.")
    with Image.open(files[0]) as image:
        return image.size[1], image.size[0]


def source_images(source, batch_size=250, image_size=None, channels=3, key="images",
                  data_dir=None):
    """The images of a source as batches in `[-1, 1]` (uint8 levels), in a fixed order.

    Args:
        source: a folder, an `.npz` / `.npy` file or `"tfds:NAME[:SPLIT]"`.
        batch_size: images per batch.
        image_size: folders only: int or `(height, width)` (images are resized
            and center-cropped as in `keras_gcm.data.image_folder`); None: the
            size of the first image.
        channels: folders only: 3 (RGB) or 1 (grayscale).
        key: `.npz` only: the array's name.
        data_dir: TensorFlow Datasets only: its data folder.

    Returns:
        A `tf.data.Dataset` of float32 image batches (the last one may be smaller).

    Example:

    >>> import keras_gcm.metrics.fid_stats
    >>> batches = keras_gcm.metrics.fid_stats.source_images("my_images/", 250)  # doctest: +SKIP
    """
    from keras_gcm.data import image_folder, npz_images

    text = os.fspath(source)
    if text.startswith("tfds:"):
        return _tfds_images(text, batch_size, data_dir)
    if os.path.isdir(text):
        size = image_size if image_size is not None else _first_image_size(text)
        return image_folder(text, size, batch_size, channels=channels, shuffle=False,
                            repeat=False, drop_remainder=False)
    if os.path.isfile(text) and text.endswith((".npz", ".npy")):
        return npz_images(text, key=key, batch_size=batch_size, shuffle=False, repeat=False,
                          drop_remainder=False)
    raise ValueError(f"`source` must be {SOURCE_HELP}; {text!r} is none of these.")


def feature_extractor(features="inception", inception_weights=None):
    """The extractor of `--features`: FID Inception-v3 (needs the weight file) or digits."""
    from keras_gcm import metrics

    if features == "digits":
        return metrics.digits_features
    if features != "inception":
        raise ValueError(f"`features` must be 'inception' or 'digits'; got {features!r}.")
    if inception_weights is None:
        raise ValueError(
            "Inception features need the FID weight file: pass `--inception-weights "
            "pt_inception-2015-12-05-6726825d.pth` (download it from the pytorch-fid "
            "releases; see keras_gcm.metrics.inception), or `--features digits` for 8x8 "
            "digit images."
        )
    return metrics.fid_inception_v3(inception_weights)


def reference_statistics(source, extractor, batch_size=250, max_images=None, progress=True,
                         **source_kwargs):
    """`(mu, cov)` of the features of every image of `source` (see `source_images`).

    Args:
        source: a folder, an `.npz` / `.npy` file or `"tfds:NAME[:SPLIT]"`.
        extractor: images in `[-1, 1]` -> `(B, F)` features (e.g.
            `keras_gcm.metrics.fid_inception_v3(weights)`).
        batch_size: images per batch.
        max_images: optional int, use at most this many images.
        progress: bool, show a progress bar.
        **source_kwargs: `image_size`, `channels`, `key`, `data_dir` of `source_images`.

    Returns:
        `(mu, cov)`, float64 arrays `(F,)` and `(F, F)`.

    Example:

    >>> import os, tempfile
    >>> import keras_gcm.metrics.fid_stats
    >>> path = os.path.join(tempfile.mkdtemp(), "images.npz")
    >>> np.savez(path, images=np.random.default_rng(0).integers(0, 256, (50, 4, 4, 1)))
    >>> extractor = lambda x: np.reshape(x, (len(x), -1))
    >>> mu, cov = keras_gcm.metrics.fid_stats.reference_statistics(
    ...     path, extractor, batch_size=16, progress=False)
    >>> mu.shape, cov.shape
    ((16,), (16, 16))
    """
    from keras_gcm.metrics import compute_statistics

    batches = source_images(source, batch_size=batch_size, **source_kwargs)
    return compute_statistics(extractor, batches, batch_size=batch_size, progress=progress,
                              max_images=max_images)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_gcm.metrics.fid_stats",
        description="Computes and saves FID reference statistics (mu, sigma) of a data set.",
    )
    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("output", help="the .npz file to write (keys mu, sigma)")
    parser.add_argument("--inception-weights", default=None,
                        help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID weights)")
    parser.add_argument("--features", choices=("inception", "digits"), default="inception",
                        help="inception (FID) or digits (8x8 digits classifier, no weight file)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="folders: resize and center-crop to this size (default: the first "
                             "image's size)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3,
                        help="folders: 3 (RGB) or 1 (grayscale)")
    parser.add_argument("--key", default="images", help=".npz: the array's name")
    parser.add_argument("--data-dir", default=None, help="tfds: the TensorFlow Datasets folder")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--max-images", type=int, default=None)
    args = parser.parse_args(argv)
    if args.features == "inception" and args.inception_weights is None:
        parser.error("Inception features need --inception-weights "
                     "pt_inception-2015-12-05-6726825d.pth (or use --features digits).")
    if args.inception_weights is not None and not os.path.isfile(args.inception_weights):
        parser.error(f"--inception-weights {args.inception_weights!r} is not a file.")
    return args


def main(argv=None):
    """Command line: `python -m keras_gcm.metrics.fid_stats SOURCE OUTPUT [options]`."""
    args = parse_args(argv)
    from keras_gcm.metrics import save_statistics

    extractor = feature_extractor(args.features, args.inception_weights)
    mu, cov = reference_statistics(
        args.source, extractor, batch_size=args.batch_size, max_images=args.max_images,
        image_size=args.image_size, channels=args.channels, key=args.key,
        data_dir=args.data_dir,
    )
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    save_statistics(args.output, mu, cov)
    print(f"wrote {args.output}: mu {mu.shape}, sigma {cov.shape} ({args.features} features "
          f"of {args.source})")
    return mu, cov


if __name__ == "__main__":
    main()
