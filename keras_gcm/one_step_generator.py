"""`OneStepGenerator`: a trained model's one-step map as a plain Keras model, for export.

`ConsistencyModel.export` exports one of these: a frozen copy of the network
holding the EMA (or raw) weights, called as `generator(noise)` or
`generator(noise, class_labels)`, that returns `g(sigma(tT) z, tT, t0)`
(Eq. 3): the same samples as `keras_gcm.samplers.one_step` for the same
noise. It has no optimizer, EMA or seed state, so Keras' export formats
(a TensorFlow SavedModel from JAX or TensorFlow, a `torch.export` program
from torch) capture only the network and the one-step map.
"""

import keras
from keras import ops


class OneStepGenerator(keras.Model):
    """Noise (and labels) to one-step samples, `g(sigma(tT) z, tT, t0)` (Eq. 3).

    Holds a snapshot of the network's EMA weights (or of the raw weights with
    `use_ema=False`, or before the first EMA update) as its own variables,
    taken when the generator is made: later training does not change it.
    The mathematics is the model's own `g`, evaluated with the snapshot.

    Args:
        model: a built `keras_gcm.ConsistencyModel`.
        use_ema: bool, snapshot the EMA weights (default True).
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> model = keras_gcm.ConsistencyModel(keras_gcm.networks.MLP(hidden_units=32))
    >>> model.build((None, 2))
    >>> generator = keras_gcm.one_step_generator.OneStepGenerator(model)
    >>> x = generator(keras.random.normal((4, 2)))  # 4 one-step samples
    """

    def __init__(self, model, use_ema=True, **kwargs):
        super().__init__(**kwargs)
        if not getattr(model, "built", False):
            raise ValueError(
                "The ConsistencyModel is not built: train it (fit) or call "
                "model.build((None, ...data dims)) before exporting it."
            )
        # The consistency model supplies the mathematics (its `g`) but is not
        # tracked: the generator's only state is its weight snapshot.
        object.__setattr__(self, "_consistency_model", model)
        self.data_shape = tuple(model.data_shape)
        self.conditional = bool(getattr(model.network, "label_dim", 0))
        trainable, non_trainable = model.network_values(use_ema=use_ema)
        self.snapshot = [
            self.add_weight(
                shape=v.shape, dtype=v.dtype, trainable=False, name=f"weight_{i}",
                initializer="zeros",
            )
            for i, (v, value) in enumerate(zip(model.network.trainable_variables, trainable))
        ]
        self.snapshot_state = [
            self.add_weight(
                shape=v.shape, dtype=v.dtype, trainable=False, name=f"state_{i}",
                initializer="zeros",
            )
            for i, (v, value) in enumerate(
                zip(model.network.non_trainable_variables, non_trainable))
        ]
        for variable, value in zip(self.snapshot + self.snapshot_state,
                                   list(trainable) + list(non_trainable)):
            variable.assign(value)
        self.built = True

    def call(self, noise, class_labels=None):
        """One-step samples of the noise `z` (shape (B, ...data dims)).

        Args:
            noise: standard normal noise.
            class_labels: (B,) int labels, for class-conditional networks.

        Returns:
            Samples of the noise's shape.
        """
        if self.conditional and class_labels is None:
            raise ValueError(
                "This network is class-conditional: call the generator as "
                "generator(noise, class_labels)."
            )
        if not self.conditional and class_labels is not None:
            raise ValueError(
                "This network takes no class labels: call the generator as "
                "generator(noise)."
            )
        model = self._consistency_model
        z = ops.cast(noise, "float32")
        first = z[(slice(None),) + (0,) * (len(z.shape) - 1)]
        t = ops.zeros_like(first) + model.tT
        s = ops.zeros_like(first) + model.t0
        values = ([v.value for v in self.snapshot], [v.value for v in self.snapshot_state])
        # The prior follows the training noise, z ~ N(0, noise_std^2 I).
        x = model.interpolant.sigma(model.tT) * model.interpolant.noise_std * z
        return model.g(x, t, s, class_labels, False, values)

    def input_signature(self):
        """The `keras.InputSpec`s of `call`: noise, and labels where conditional."""
        specs = [keras.InputSpec(shape=(None,) + self.data_shape, dtype="float32")]
        if self.conditional:
            specs.append(keras.InputSpec(shape=(None,), dtype="int32"))
        return specs
