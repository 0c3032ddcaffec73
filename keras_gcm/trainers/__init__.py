"""Per-backend training steps.

Each backend module provides the same six things and nothing else:

* `ConsistencyTrainer`: a mixin whose `train_step` takes the gradient of
  `ConsistencyModel.compute_consistency_loss`, applies the optimizer and
  updates the EMA weights inside the compiled step;
* `compile_inference(fn, jit_compile)`: compiles a pure inference function
  (used by the samplers; `jit_compile` is the model's `compile` setting, which
  only the torch backend reads: `torch.compile` when True, eager otherwise);
* `jvp(fn, primals, tangents)`: forward-mode derivative for the analytic
  (continuous-time) loss;
* `global_rng_state()` / `set_global_rng_state(state)`: the backend's global
  random state that layers without an explicit seed draw from (only the torch
  backend has one: unseeded dropout uses torch's global generator), so that
  the teacher pass can replay the student's dropout mask;
* `draw_for_replica(draw, batch_size)`: this replica's rows of the random
  draws (noise, times) of the global batch: `draw(batch_size)` except inside
  a `tf.distribute` replica, where every replica draws for the global batch
  from the mirrored seed states and keeps its own rows (different noise on
  every replica, equal to one device's draws);
* `export_defaults(format, input_signature)`: extra `keras.Model.export`
  arguments for exporting the one-step generator (under torch, a dynamic
  batch dimension for `torch.export`).

Multi-device training (JAX `keras.distribution`, TensorFlow
`tf.distribute`) is described in each backend module's docstring.

All the mathematics lives in `keras_gcm.consistency_model`, in `keras.ops`.
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "jax":
    from keras_gcm.trainers.jax import ConsistencyTrainer, compile_inference, jvp  # noqa: F401
    from keras_gcm.trainers.jax import global_rng_state, set_global_rng_state  # noqa: F401
    from keras_gcm.trainers.jax import draw_for_replica  # noqa: F401
    from keras_gcm.trainers.jax import export_defaults  # noqa: F401
elif _BACKEND == "tensorflow":
    from keras_gcm.trainers.tensorflow import ConsistencyTrainer, compile_inference, jvp  # noqa: F401
    from keras_gcm.trainers.tensorflow import global_rng_state, set_global_rng_state  # noqa: F401
    from keras_gcm.trainers.tensorflow import draw_for_replica  # noqa: F401
    from keras_gcm.trainers.tensorflow import export_defaults  # noqa: F401
elif _BACKEND == "torch":
    from keras_gcm.trainers.torch import ConsistencyTrainer, compile_inference, jvp  # noqa: F401
    from keras_gcm.trainers.torch import global_rng_state, set_global_rng_state  # noqa: F401
    from keras_gcm.trainers.torch import draw_for_replica  # noqa: F401
    from keras_gcm.trainers.torch import export_defaults  # noqa: F401
else:
    raise ImportError(
        f"keras_gcm supports the jax, tensorflow and torch backends. "
        f"KERAS_BACKEND is {_BACKEND!r}."
    )
