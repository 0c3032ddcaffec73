"""Command: encode an image folder or a tfds data set once into VAE latent shards.

    python -m keras_gcm.data.encode_latents --vae sd-vae-ft-ema/ \\
        --images imagenet/train --resolution 256 --out latents/imagenet256
    python -m keras_gcm.data.encode_latents --vae sd-vae-ft-ema/ \\
        --tfds imagenet2012 --split train --resolution 256 --out latents/imagenet256

Images are resized (shorter side) and center-cropped to `--resolution`,
scaled to [-1, 1] and encoded with the SD VAE (`AutoencoderKL.from_diffusers`);
the posterior mean and std go to `shard-*.npz` files with the labels (for an
image folder: the index of the first-level subfolder in sorted order, as
ImageNet's `train/<wnid>/` layout gives), see `keras_gcm.data.latents`.
"""

import argparse
import os
import sys

import numpy as np


def _folder_batches(path, resolution, batch_size):
    from keras_gcm.data.images import image_folder
    from keras_gcm.data.images import list_image_files

    files = list_image_files(path)
    root = os.path.abspath(os.fspath(path))
    classes = sorted({os.path.relpath(os.path.abspath(f), root).split(os.sep)[0]
                      for f in files if os.sep in os.path.relpath(os.path.abspath(f), root)})
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index.get(os.path.relpath(os.path.abspath(f), root).split(os.sep)[0], -1)
                       for f in files], "int32")
    ds = image_folder(path, resolution, batch_size, shuffle=False, repeat=False,
                      drop_remainder=False, prefetch=True)
    start = 0
    for images in ds.as_numpy_iterator():
        yield images, labels[start:start + len(images)]
        start += len(images)
    return


def _tfds_batches(name, split, resolution, batch_size, data_dir=None):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    ds = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir,
                   shuffle_files=False)

    def prepare(image, label):
        image = _center_crop(tf, image, resolution)
        return image / 127.5 - 1.0, tf.cast(label, tf.int32)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    yield from ds.as_numpy_iterator()


def _center_crop(tf, image, resolution):
    """Shorter side to `resolution` (bilinear, antialiased), then a center crop."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resolution / tf.reduce_min(shape)
    size = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    size = tf.maximum(size, resolution)
    resized = tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)
    top = (size[0] - resolution) // 2
    left = (size[1] - resolution) // 2
    out = resized[top:top + resolution, left:left + resolution]
    if image.shape[-1] == 1:
        out = tf.image.grayscale_to_rgb(out)
    return tf.clip_by_value(tf.round(out), 0.0, 255.0)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Encode images once into SD-VAE latent shards (posterior mean and std).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="an image folder (labels: first-level subfolders)")
    source.add_argument("--tfds", help="a tensorflow-datasets name, e.g. imagenet2012")
    parser.add_argument("--split", default="train", help="tfds split (default train)")
    parser.add_argument("--data-dir", default=None, help="tfds data_dir")
    parser.add_argument("--vae", required=True,
                        help="diffusers AutoencoderKL weights (folder or .safetensors/.bin) "
                             "of sd-vae-ft-ema, https://huggingface.co/stabilityai/sd-vae-ft-ema")
    parser.add_argument("--out", required=True, help="output latent folder (empty)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--num-classes", type=int, default=None)
    args = parser.parse_args(argv)

    from keras_gcm.data.latents import encode_batches
    from keras_gcm.networks.vae import AutoencoderKL

    vae = AutoencoderKL.from_diffusers(args.vae)
    if args.resolution % vae.downsampling:
        parser.error(f"--resolution must be divisible by {vae.downsampling}.")
    if args.images:
        batches = _folder_batches(args.images, args.resolution, args.batch_size)
        source_name = os.path.abspath(args.images)
    else:
        batches = _tfds_batches(args.tfds, args.split, args.resolution, args.batch_size,
                                args.data_dir)
        source_name = f"tfds:{args.tfds}:{args.split}"
    metadata = encode_batches(vae, batches, args.out, args.shard_size, args.dtype,
                              args.num_classes, source_name)
    print(f"wrote {metadata['num_examples']} latents of shape {tuple(metadata['shape'])} "
          f"in {metadata['num_shards']} shards to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
