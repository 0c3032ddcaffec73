"""Train a consistency model on your own folder of images, at a chosen resolution.

    python recipes/images.py my_images/ --image-size 32
    python recipes/images.py my_images/ --image-size 64 --inception-weights pt_inception-2015-12-05-6726825d.pth
    python recipes/images.py my_digits/ --image-size 8 --channels 1 --fid-features digits

The folder is read once with `keras.utils.image_dataset_from_directory` (PNG, JPEG,
BMP, GIF; resized to `--image-size` with the aspect ratio kept by a center crop).
When it holds one subfolder per class and no loose images, the model is
**class-conditional**: the labels come from the subfolder names (sorted, as Keras
infers them), the network gets `label_dim = number of classes`, and samples are
drawn for the classes in the data's proportions (`--unconditional` ignores the
subfolders). The network is a DDPM++-style `SongUNet` sized by `--model-channels`,
`--channel-mult`, `--num-blocks`, `--attn-resolutions`.

Training runs with `model.fit` on a seeded step-indexed stream
(`keras_gcm.data.StepIndexedBatches`) with `keras_gcm.callbacks.ResumableCheckpoint`:
run the same command again after a stop and it continues from the last checkpoint
(`--no-resume` refuses an existing one). Sample grids go to `grids/` every
`--grid-every` steps. At the end, `metrics.json` holds the Fréchet distance of 1- and
2-step samples (and of the untrained model) against the **folder's own statistics**:
FID with `--inception-weights` (the pytorch-fid weight file), the Fréchet digits
distance with `--fid-features digits` (8x8 grayscale images only), none otherwise.
`--smoke` trains two steps of a tiny network (a check of the set-up).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _int_list(text):
    text = str(text).strip()
    return [int(v) for v in text.split(",") if v.strip()] if text else []


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="the image folder (one subfolder per class for labels)")
    parser.add_argument("--image-size", type=int, required=True,
                        help="training resolution (square; images are resized and center-cropped)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3,
                        help="3 (RGB) or 1 (grayscale)")
    parser.add_argument("--unconditional", action="store_true",
                        help="ignore class subfolders (no labels)")
    parser.add_argument("--preset", default="gcm_cu",
                        help="any keras_gcm preset (gcm_cu, gcm_vu, cu_a_baseline, ...)")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps")
    parser.add_argument("--steps-per-epoch", type=int, default=500,
                        help="steps per fit epoch (checkpoints at epoch ends)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--epsilon", type=float, default=None,
                        help="epsilon of the preset's discretisation h(t)")
    parser.add_argument("--model-channels", type=int, default=32)
    parser.add_argument("--channel-mult", type=_int_list, default=[1, 2, 2])
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument("--attn-resolutions", type=_int_list, default=[],
                        help="comma-separated resolutions with self-attention ('' for none)")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--xflip", action="store_true", help="random left-right flips")
    parser.add_argument("--grid-every", type=int, default=1000)
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="steps between checkpoints (default: every epoch end)")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="refuse to continue from an existing checkpoint")
    parser.add_argument("--fid-features", choices=("inception", "digits", "none"), default=None,
                        help="features of the final Fréchet distance (default: inception with "
                             "--inception-weights, else none)")
    parser.add_argument("--inception-weights", default=None,
                        help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID weights)")
    parser.add_argument("--fid-samples", type=int, default=None,
                        help="samples of the final FID (default: as many as the folder has)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/images")
    parser.add_argument("--smoke", action="store_true",
                        help="two steps of a tiny network: checks the set-up in seconds")
    parser.add_argument("--verbose", type=int, default=2, help="fit verbosity (0, 1, 2)")
    _common.add_backend_argument(parser)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.folder):
        parser.error(f"{args.folder!r} is not a folder of images.")
    if args.image_size < 4:
        parser.error(f"--image-size must be >= 4; got {args.image_size}.")
    if args.fid_features is None:
        args.fid_features = "inception" if args.inception_weights else "none"
    if args.fid_features == "inception" and not args.inception_weights:
        parser.error("--fid-features inception needs --inception-weights "
                     "pt_inception-2015-12-05-6726825d.pth (or --fid-features digits / none).")
    if args.fid_features == "digits" and (args.image_size != 8 or args.channels != 1):
        parser.error("--fid-features digits needs 8x8 grayscale images: --image-size 8 "
                     "--channels 1.")
    if args.smoke:
        args.steps, args.steps_per_epoch, args.grid_every = 2, 1, 1
        args.model_channels, args.channel_mult, args.num_blocks = 8, [1], 1
        args.attn_resolutions = []
        args.batch_size = min(args.batch_size, 8)
        args.fid_samples = min(args.fid_samples or 64, 64)
    for name in ("steps", "steps_per_epoch", "batch_size", "grid_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive.")
    if args.steps % args.steps_per_epoch:
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-epoch "
                     f"({args.steps_per_epoch}).")
    return args


def _has_images(folder):
    return any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(folder)
               if os.path.isfile(os.path.join(folder, name)))


def class_subfolders(folder):
    """The sorted class subfolders, or `[]` when the folder is not one subfolder per class.

    The library's `keras_gcm.data.image_folder_classes` (hidden folders are no
    class, as Keras infers them), with its errors read as "unconditional".
    """
    from keras_gcm.data import image_folder_classes

    if _has_images(folder):
        return []
    try:
        return image_folder_classes(folder)
    except ValueError:
        return []


def load_folder(folder, image_size, channels=3, conditional=True):
    """`(pixels, labels, class_names)`: uint8 `(N, S, S, C)`, int32 `(N,)` or None, names.

    Reads every image once through `keras.utils.image_dataset_from_directory`
    (labels inferred from the subfolder names when `conditional` and the folder
    is one subfolder per class).
    """
    import numpy as np
    import keras

    classes = class_subfolders(folder) if conditional else []
    ds = keras.utils.image_dataset_from_directory(
        folder, labels="inferred" if classes else None,
        label_mode="int" if classes else None, class_names=classes or None,
        color_mode="grayscale" if channels == 1 else "rgb", batch_size=256,
        image_size=(image_size, image_size), shuffle=False, crop_to_aspect_ratio=True,
        verbose=False,
    )
    pixels, labels = [], []
    for batch in ds:
        images = batch[0] if classes else batch
        pixels.append(np.clip(np.round(np.asarray(images)), 0, 255).astype(np.uint8))
        if classes:
            labels.append(np.asarray(batch[1], np.int32))
    if not pixels:
        raise ValueError(f"No images found under {folder!r}.")
    pixels = np.concatenate(pixels)
    return pixels, (np.concatenate(labels) if classes else None), classes


def build_model(args, num_classes):
    import keras_gcm

    network = keras_gcm.networks.SongUNet(
        img_resolution=args.image_size, in_channels=args.channels,
        model_channels=args.model_channels, channel_mult=args.channel_mult,
        num_blocks=args.num_blocks, attn_resolutions=args.attn_resolutions,
        dropout=args.dropout, label_dim=num_classes,
        time_inputs=keras_gcm.presets.time_inputs(args.preset), seed=args.seed,
    )
    model = keras_gcm.ConsistencyModel.from_preset(
        args.preset, network, **_common.preset_overrides(args))
    model.compile(optimizer=keras_gcm.optimizers.RAdam(args.learning_rate))
    model.build((None, args.image_size, args.image_size, args.channels))
    return model


def make_extractor(args):
    from keras_gcm import metrics

    if args.fid_features == "digits":
        return metrics.digits_features
    if args.fid_features == "inception":
        return metrics.fid_inception_v3(args.inception_weights)
    return None


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    import numpy as np
    import keras

    from keras_gcm import metrics
    from keras_gcm import samplers
    from keras_gcm.callbacks import ResumableCheckpoint
    from keras_gcm.callbacks import SampleGrid
    from keras_gcm.data import StepIndexedBatches
    from keras_gcm.utils import save_image_grid

    out = _common.prepare_output(args.output)
    extractor = make_extractor(args)  # a missing weight file fails before training
    keras.utils.set_random_seed(args.seed)
    pixels, labels, class_names = load_folder(
        args.folder, args.image_size, args.channels, conditional=not args.unconditional)
    num_classes = len(class_names)

    model = build_model(args, num_classes)
    checkpoint_dir = os.path.join(out, "checkpoints")
    if not args.resume and ResumableCheckpoint.read_index(checkpoint_dir) is not None:
        raise ValueError(f"{checkpoint_dir} holds a checkpoint and --no-resume was given: "
                         "choose another --output or delete the folder.")
    start = ResumableCheckpoint.latest_step(checkpoint_dir)
    if start % args.steps_per_epoch:
        raise ValueError(f"The checkpoint in {checkpoint_dir} is at step {start}, not a "
                         f"multiple of --steps-per-epoch {args.steps_per_epoch}: resume with "
                         "the original value.")
    data = StepIndexedBatches(pixels, args.batch_size, seed=args.seed, start_step=start,
                              xflip=args.xflip, labels=labels).as_dataset()

    def sample_labels(n, seed):
        """Labels in the data's proportions (a seeded draw of the folder's own labels)."""
        if labels is None:
            return None
        return np.random.default_rng(seed).choice(labels, size=n).astype(np.int32)

    def sampler(draw):
        def fn(model, num_samples, seed=None, batch_size=256):
            return draw(model, num_samples, seed=seed, batch_size=batch_size,
                        class_labels=sample_labels(num_samples, seed))
        fn.__name__ = draw.__name__
        return fn

    scale = max(1, 64 // args.image_size)
    grids = SampleGrid(args.grid_every, os.path.join(out, "grids"), num_samples=64,
                       seed=args.seed + 6, sampler=sampler(samplers.one_step), scale=scale,
                       at_train_end=False)
    callbacks = [ResumableCheckpoint(checkpoint_dir, every_n_steps=args.checkpoint_every,
                                     verbose=0 if args.smoke else 1), grids]
    num_eval = args.fid_samples or len(pixels)
    untrained = (sampler(samplers.one_step)(model, num_eval, seed=args.seed + 1)
                 if start == 0 else None)
    history = None
    with _common.Timer() as timer:
        if start < args.steps:
            history = model.fit(data, steps_per_epoch=args.steps_per_epoch,
                                epochs=args.steps // args.steps_per_epoch,
                                initial_epoch=start // args.steps_per_epoch,
                                callbacks=callbacks, verbose=args.verbose, shuffle=False)
        else:
            print(f"{checkpoint_dir} is already at step {start} >= --steps {args.steps}.")
            ResumableCheckpoint(checkpoint_dir, verbose=0).restore(model)
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    one = sampler(samplers.one_step)(model, num_eval, seed=args.seed + 1)
    two = sampler(samplers.two_step)(model, num_eval, seed=args.seed + 2)
    for name, images in [("samples_1step", one), ("samples_2step", two),
                         ("data", pixels / 127.5 - 1.0)]:
        save_image_grid(np.clip(images[:64], -1, 1), os.path.join(out, f"{name}.png"),
                        nrow=8, scale=scale)
    result = {
        "folder": os.path.abspath(args.folder),
        "images": int(len(pixels)),
        "image_size": args.image_size,
        "channels": args.channels,
        "class_names": class_names,
        "preset": args.preset,
        "backend": backend,
        "smoke": args.smoke,
        "steps": step,
        "resumed_from_step": start,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "parameters": int(model.network.count_params()),
        "train_seconds": round(timer.seconds, 2),
        "final_loss": float(history.history["loss"][-1]) if history is not None else None,
        "grids": sorted(os.path.relpath(p, out) for p in grids.paths),
        "fid_features": args.fid_features,
    }
    if extractor is not None:
        # The folder's own statistics, from the same uint8 levels the samples are rounded to.
        reference = metrics.compute_statistics(extractor, pixels / 127.5 - 1.0, progress=False)
        result["fid_samples"] = num_eval
        for name, images in [("fid_one_step", one), ("fid_two_step", two),
                             ("fid_untrained_one_step", untrained)]:
            if images is None:
                continue
            fid = metrics.FrechetInceptionDistance(extractor)
            fid.update_from_dataset(np.clip(images, -1.0, 1.0), progress=False)
            result[name] = float(fid.result(reference))
    _common.write_json(os.path.join(out, "metrics.json"), result)
    fids = "".join(f", {k} {result[k]:.3f}" for k in ("fid_one_step", "fid_two_step")
                   if k in result)
    kind = f"{num_classes} classes" if num_classes else "unconditional"
    print(f"[{backend}] {args.preset} on {len(pixels)} images ({kind}, {args.image_size}px): "
          f"step {step}{fids} | wrote {out}")
    return result


if __name__ == "__main__":
    main()
