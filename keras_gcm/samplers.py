"""Few-step samplers for a trained `ConsistencyModel` (appendix G.1).

* `one_step`: `x = g(sigma(tT) z, tT, t0)`.
* `restart` (CU models, multi-step): `x0 = g(sigma(tT) z, tT, t0)`, then for
  each intermediate `t_i`: `x0 = g(alpha(t_i) x0 + sigma(t_i) z_i, t_i, t0)`.
* `pushforward` (VU models): `x = g(x, t_i, t_{i+1})` along a decreasing grid
  ending at t0.

Samples are generated in batches with a compiled function (jit / tf.function /
no-grad torch) using the EMA weights by default. Noise is drawn with numpy from
`seed` in fixed chunks of samples, so the same weights give the same samples on
every backend and for every `batch_size`.
"""

import numpy as np
import keras

from keras_gcm.validation import check_class_labels, check_int, check_seed

from keras_gcm.trainers import compile_inference

# Samples per independently seeded noise chunk (the noise of sample i depends
# only on the seed and i, not on the batch size).
_NOISE_CHUNK = 256


def _check_times(model, times, kind):
    times = tuple(float(t) for t in times)
    if not times:
        raise ValueError("`times` must hold at least one time.")
    for t in times:
        if not model.t0 - 1e-9 <= t <= model.tT + 1e-9:
            raise ValueError(
                f"Sampling times must lie in [t0, tT] = [{model.t0}, {model.tT}]; "
                f"got {times}."
            )
    if any(b >= a for a, b in zip(times[:-1], times[1:])):
        raise ValueError(f"Sampling times must be strictly decreasing; got {times}.")
    if kind == "pushforward" and len(times) < 2:
        raise ValueError("A pushforward grid needs at least two times (start, end).")
    return times


def _generate(model, values, noises, times, kind, class_labels, guidance_scale=1.0):
    """The sampler's mathematics in keras.ops (compiled per backend)."""
    from keras import ops

    interp = model.interpolant
    # The prior follows the training noise: z ~ N(0, noise_std^2 I).
    noises = [ops.convert_to_tensor(z, "float32") * interp.noise_std for z in noises]
    if class_labels is not None:
        class_labels = ops.convert_to_tensor(class_labels)
    x = interp.sigma(times[0]) * noises[0]
    batch = ops.zeros_like(x[(slice(None),) + (0,) * (len(x.shape) - 1)])

    def g(x_t, t, s):
        if guidance_scale == 1.0:
            return model.g(x_t, batch + t, batch + s, class_labels, False, values)
        # Classifier-free guidance: f = f(. | none) + w (f(. | y) - f(. | none)).
        t_b, s_b = batch + t, batch + s
        f_cond = model.f(x_t, t_b, s_b, class_labels, False, values)
        f_null = model.f(x_t, t_b, s_b, model.null_labels(class_labels), False, values)
        f = f_null + guidance_scale * (f_cond - f_null)
        return x_t + ops.reshape(s_b - t_b, (-1,) + (1,) * (len(x_t.shape) - 1)) * f

    if kind == "restart":
        x0 = g(x, times[0], model.t0)
        for t_i, z_i in zip(times[1:], noises[1:]):
            x0 = g(interp.alpha(t_i) * x0 + interp.sigma(t_i) * z_i, t_i, model.t0)
        return x0
    for t_cur, t_next in zip(times[:-1], times[1:]):
        x = g(x, t_cur, t_next)
    return x


def _sampler_function(model, times, kind, labelled, guidance_scale=1.0):
    jit_compile = getattr(model, "jit_compile", False) is True
    key = (kind, times, labelled, guidance_scale, jit_compile)
    fn = model._inference_functions.get(key)
    if fn is None:
        def run(values, noises, class_labels):
            return _generate(model, values, noises, times, kind, class_labels,
                             guidance_scale)

        # torch: torch.compile when the model was compiled with jit_compile=True.
        fn = compile_inference(run, jit_compile)
        model._inference_functions[key] = fn
    return fn


def _noise(seed, start, n, shape, num_noises):
    """Standard normal noise of samples [start, start + n), shape (num_noises, n, *shape)."""
    first, last = start // _NOISE_CHUNK, (start + n - 1) // _NOISE_CHUNK
    chunks = [
        np.random.default_rng([seed, k]).standard_normal(
            (num_noises, _NOISE_CHUNK) + shape, dtype=np.float32
        )
        for k in range(first, last + 1)
    ]
    offset = start - first * _NOISE_CHUNK
    return np.concatenate(chunks, axis=1)[:, offset:offset + n]


def _check_guidance(model, guidance_scale, class_labels):
    guidance_scale = float(guidance_scale)
    if guidance_scale == 1.0:
        return guidance_scale
    if not int(getattr(model.network, "label_dim", 0) or 0):
        raise ValueError(
            f"guidance_scale={guidance_scale:g} needs a class-conditional model; this "
            "model's network is unconditional (no `label_dim`). Use guidance_scale=1."
        )
    if class_labels is None:
        raise ValueError(
            f"guidance_scale={guidance_scale:g} guides towards given classes: pass "
            "`class_labels` (one label per sample)."
        )
    if not model.trained_with_label_dropout:
        raise ValueError(
            f"guidance_scale={guidance_scale:g} needs the unconditional model that "
            "label dropout trains, but this model was trained without it: train with "
            "ConsistencyModel(..., label_dropout=0.1), or use guidance_scale=1."
        )
    return guidance_scale


def _sample(model, num_samples, times, kind, seed, batch_size, use_ema,
            class_labels, verbose, guidance_scale=1.0):
    if not model.built:
        raise ValueError(
            "The model is not built: train it (fit) or call model.build(shape) first."
        )
    guidance_scale = _check_guidance(model, guidance_scale, class_labels)
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    seed = check_seed(seed)
    if class_labels is not None:
        class_labels = np.asarray(class_labels)
        if class_labels.shape[0] != num_samples:
            raise ValueError(
                f"`class_labels` must hold one label per sample ({num_samples}); "
                f"got {class_labels.shape[0]}."
            )
        # On the host: inside the compiled sampler the labels cannot be read
        # (JAX / TensorFlow), and an out-of-range index would silently give
        # a wrong (e.g. zero) class embedding.
        label_dim = getattr(model.network, "label_dim", None)
        if label_dim:
            check_class_labels(class_labels, label_dim)
    num_noises = len(times) if kind == "restart" else 1
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    fn = _sampler_function(model, times, kind, class_labels is not None, guidance_scale)
    values = model.network_values(use_ema=use_ema)
    out = []
    progbar = keras.utils.Progbar(num_samples, unit_name="sample") if verbose else None
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        noises = list(_noise(seed, start, n, tuple(model.data_shape), num_noises))
        labels = None if class_labels is None else class_labels[start:start + n]
        result = fn(values, noises, labels)
        out.append(np.asarray(keras.ops.convert_to_numpy(result)))
        if progbar is not None:
            progbar.add(n)
    return np.concatenate(out, axis=0)


def one_step(model, num_samples, seed=None, batch_size=1024, use_ema=True,
             class_labels=None, verbose=0, guidance_scale=1.0):
    """One-step samples `g(sigma(tT) z, tT, t0)`.

    Args:
        model: a built `ConsistencyModel`.
        num_samples: int.
        seed: int or None, numpy seed of the noise.
        batch_size: int, samples per compiled call (bounds memory).
        use_ema: bool, sample with the EMA weights (default True; the raw
            weights if the EMA has not been updated yet).
        class_labels: optional (num_samples,) labels for class-conditional
            networks: int classes in `[0, label_dim)` (`label_dim`: "no
            label") or one-hot rows; other indices are a `ValueError`.
        verbose: 0 or 1 (a progress bar).
        guidance_scale: float w, classifier-free guidance at sampling time:
            every step uses `f(. | none) + w (f(. | y) - f(. | none))`
            (default 1: no guidance). Needs `class_labels` and a model
            trained with label dropout. (A model trained with model guidance
            is guided already: sample it with w = 1.)

    Returns:
        A numpy array of shape (num_samples, ...data dims).

    Example:

    >>> network = keras_gcm.networks.MLP(hidden_units=32, num_blocks=1)
    >>> model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network)
    >>> model.build((None, 2))  # untrained here; train it with `fit` first
    >>> x = keras_gcm.samplers.one_step(model, 10_000, seed=0)
    >>> x.shape
    (10000, 2)
    >>> y = keras_gcm.samplers.one_step(model, 10_000, seed=0, batch_size=3000)
    >>> bool(np.allclose(x, y, atol=1e-5))  # the same noise for every batch size
    True
    """
    return _sample(model, num_samples, (model.tT,), "restart", seed, batch_size,
                   use_ema, class_labels, verbose, guidance_scale)


def restart(model, num_samples, times=(0.994, 0.6), seed=None, batch_size=1024,
            use_ema=True, class_labels=None, verbose=0, guidance_scale=1.0):
    """Multi-step restart sampling for CU models (fresh noise at each time).

    Args:
        model: a built `ConsistencyModel`.
        num_samples: int.
        times: decreasing times; the first is the start (tT), the rest are
            the restart times (`(0.994, 0.6)`: the paper's 2-step sampler).
        seed, batch_size, use_ema, class_labels, verbose, guidance_scale: as
            in `one_step`.

    Returns:
        A numpy array of shape (num_samples, ...data dims).

    Example:

    >>> network = keras_gcm.networks.MLP(hidden_units=32, num_blocks=1)
    >>> model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network)
    >>> model.build((None, 2))  # untrained here; train it with `fit` first
    >>> x = keras_gcm.samplers.restart(model, 10_000, times=(0.994, 0.6), seed=0)
    >>> x.shape
    (10000, 2)
    """
    times = _check_times(model, times, "restart")
    return _sample(model, num_samples, times, "restart", seed, batch_size, use_ema,
                   class_labels, verbose, guidance_scale)


def pushforward(model, num_samples, times=(0.994, 0.6, 0.006), seed=None,
                batch_size=1024, use_ema=True, class_labels=None, verbose=0,
                guidance_scale=1.0):
    """Deterministic pushforward sampling for VU models: `x = g(x, t_i, t_{i+1})`.

    Args:
        model: a built VU `ConsistencyModel` (two-time-input network).
        num_samples: int.
        times: decreasing grid from tT to t0 (`(0.994, 0.6, 0.006)`: 2 steps).
        seed, batch_size, use_ema, class_labels, verbose, guidance_scale: as
            in `one_step`.

    Returns:
        A numpy array of shape (num_samples, ...data dims).

    Example:

    >>> network = keras_gcm.networks.MLP(hidden_units=32, num_blocks=1, time_inputs=2)
    >>> vu_model = keras_gcm.ConsistencyModel.from_preset("gcm_vu", network)
    >>> vu_model.build((None, 2))  # untrained here; train it with `fit` first
    >>> x = keras_gcm.samplers.pushforward(vu_model, 10_000, seed=0)
    >>> x.shape
    (10000, 2)
    """
    if not model.variable_upper_limit:
        raise ValueError(
            "Pushforward sampling jumps between arbitrary times g(x, t_i, t_i+1) "
            "and needs a VU model (a network with two time inputs); this model's "
            "network takes one. Use `restart` for CU models."
        )
    times = _check_times(model, times, "pushforward")
    return _sample(model, num_samples, times, "pushforward", seed, batch_size,
                   use_ema, class_labels, verbose, guidance_scale)


def two_step(model, num_samples, seed=None, **kwargs):
    """The paper's 2-step sampler: restart (CU) or pushforward (VU) via t1 = 0.6.

    Example:

    >>> network = keras_gcm.networks.MLP(hidden_units=32, num_blocks=1)
    >>> model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network)
    >>> model.build((None, 2))  # untrained here; train it with `fit` first
    >>> x = keras_gcm.samplers.two_step(model, 1000, seed=0)  # restart via t = 0.6
    >>> y = keras_gcm.samplers.restart(model, 1000, times=(model.tT, 0.6), seed=0)
    >>> bool(np.allclose(x, y))
    True
    """
    if model.variable_upper_limit:
        return pushforward(model, num_samples, (model.tT, 0.6, model.t0), seed, **kwargs)
    return restart(model, num_samples, (model.tT, 0.6), seed, **kwargs)


def decoded(vae, sampler="one_step", num_classes=None, guidance_scale=1.0, decode_batch_size=64,
            **sampler_kwargs):
    """A sampler that decodes latent samples to images (grids, FID).

    Returns `fn(model, num_samples, seed=None, batch_size=...)`, the sampler
    signature `keras_gcm.callbacks.SampleGrid` / `QualityMetric` accept: it
    draws latents with `sampler` (labels `i % num_classes` for sample i of a
    class-conditional model) and returns `vae.decode(latents /
    vae.scaling_factor)` clipped to [-1, 1], as a numpy array.

    Args:
        vae: a `keras_gcm.networks.AutoencoderKL` (anything with `decode`
            and `scaling_factor`).
        sampler: "one_step", "two_step" or a sampler function of this module.
        num_classes: int or None; labels for class-conditional models.
        guidance_scale: float, sampling-time CFG (see `one_step`).
        decode_batch_size: latents per decoder call.
        **sampler_kwargs: passed to the sampler.

    Returns:
        A callable.

    Example:

    >>> vae = keras_gcm.networks.AutoencoderKL(block_out_channels=[16, 32], layers_per_block=1,
    ...                                        norm_num_groups=8)
    >>> fn = keras_gcm.samplers.decoded(vae, num_classes=1000)
    >>> grid = keras_gcm.callbacks.SampleGrid(5000, "grids", sampler=fn)
    """
    samplers = {"one_step": one_step, "two_step": two_step}
    sample_fn = samplers.get(sampler, sampler) if isinstance(sampler, str) else sampler
    if not callable(sample_fn):
        raise ValueError(f"`sampler` must be 'one_step', 'two_step' or a callable; got {sampler!r}.")

    def fn(model, num_samples, seed=None, batch_size=256):
        kwargs = dict(sampler_kwargs)
        if num_classes:
            kwargs["class_labels"] = np.arange(num_samples) % int(num_classes)
        if guidance_scale != 1.0:
            kwargs["guidance_scale"] = guidance_scale
        z = sample_fn(model, num_samples, seed=seed, batch_size=batch_size, **kwargs)
        out = []
        for start in range(0, len(z), decode_batch_size):
            batch = keras.ops.convert_to_tensor(z[start:start + decode_batch_size] / vae.scaling_factor)
            out.append(np.asarray(keras.ops.convert_to_numpy(vae.decode(batch))))
        return np.clip(np.concatenate(out), -1.0, 1.0)

    return fn
