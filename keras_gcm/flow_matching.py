"""Flow-matching pretraining of a network in the consistency model's parametrisation.

A diffusion model in the flow-matching form regresses the velocity of the OT
interpolant (section 3.1, Eq. 2): with `x_t = (1 - t) x + t z`,

    L = E_{x, z, t} || c_out(t) F(c_in(t) x_t, c(t)) - (z - x) ||^2,

the same `f = c_out F(c_in x_t, c(t))` a CU `ConsistencyModel` computes, so
the pretrained network initialises a consistency model directly (its `f`
starts at the diffusion model's probability-flow velocity). This is the
small-scale stand-in for the paper's fine-tuning of a pretrained EDM2
diffusion model (Table 6a, appendix G.2).
"""

import keras
from keras import ops

from keras_gcm import interpolants
from keras_gcm import schedules


@keras.saving.register_keras_serializable(package="keras_gcm")
class FlowMatchingModel(keras.Model):
    """Trains `F` as a flow-matching diffusion model (Eq. 2) with `fit`.

    Each step draws `z ~ N(0, I)` and `t ~ U(t_min, t_max)` per example and
    minimises the mean squared error between `c_out(t) F(c_in(t) x_t, c(t))`
    and `u_t = z - x`. Fit it on images, or on `[images, labels]` (then the
    labels go to the network as `class_labels`). The loss is written once in
    `keras.ops`; Keras' own train step runs it on every backend.

    Args:
        network: a one-time-input network `F(x, c_t, class_labels=...)`.
        interpolant: `OTFlow` (default `OTFlow(0.5)`), as the consistency
            model that will be initialised from it.
        conditioning: time conditioning `c(t)` (default `ExponentialTime(3.5)`,
            `ConsistencyModel`'s), as that consistency model.
        t_min: float, smallest training time.
        t_max: float, largest training time.
        seed: int or None, seed of the noise and times.
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> net = keras_gcm.networks.MLP(hidden_units=32, time_inputs=1)
    >>> fm = keras_gcm.flow_matching.FlowMatchingModel(net, seed=0)
    >>> fm.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> history = fm.fit(keras_gcm.data.toy2d("two_moons", 256, seed=0),
    ...                  batch_size=64, epochs=1, verbose=0)
    >>> v = fm.velocity(keras.ops.zeros((4, 2)), keras.ops.full((4,), 0.5))
    """

    def __init__(self, network, interpolant=None, conditioning=None, t_min=1e-3,
                 t_max=1.0 - 1e-3, seed=None, **kwargs):
        super().__init__(**kwargs)
        if getattr(network, "time_inputs", 1) != 1:
            raise ValueError(
                "FlowMatchingModel trains a one-time-input network (`time_inputs=1`): "
                "a diffusion model takes one time."
            )
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ValueError(
                f"Need 0 <= t_min < t_max <= 1. Received t_min={t_min}, t_max={t_max}."
            )
        self.network = network
        self.interpolant = interpolant or interpolants.OTFlow(0.5)
        self.conditioning = conditioning or schedules.ExponentialTime(3.5)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape=None):
        shape = input_shape
        if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
            shape = shape[0]  # [images, labels]
        if not self.network.built and shape is not None:
            self.network.build(tuple(shape))
        self.built = True

    def velocity(self, x_t, t, class_labels=None, training=False):
        """`f(x_t, t) = c_out(t) F(c_in(t) x_t, c(t))`, float32."""
        x_t = ops.convert_to_tensor(x_t, "float32")
        t = ops.convert_to_tensor(t, "float32")
        te = ops.reshape(t, (-1,) + (1,) * (len(x_t.shape) - 1))
        kwargs = {"training": training}
        if class_labels is not None:
            kwargs["class_labels"] = class_labels
        out = self.network(self.interpolant.c_in(te) * x_t, self.conditioning.c(t), **kwargs)
        return self.interpolant.c_out(te) * ops.cast(out, "float32")

    def call(self, inputs, training=False):
        """Per-example flow-matching errors of `images` or `[images, labels]`."""
        labels = None
        if isinstance(inputs, (list, tuple)):
            inputs, labels = inputs
        x = ops.convert_to_tensor(inputs, "float32")
        batch = ops.shape(x)[0]
        z = keras.random.normal(ops.shape(x), seed=self.seed_generator)
        t = keras.random.uniform((batch,), self.t_min, self.t_max, seed=self.seed_generator)
        x_t, u = self.interpolant(x, z, t)
        f = self.velocity(x_t, t, class_labels=labels, training=training)
        return ops.mean(ops.square(f - u), axis=tuple(range(1, len(x.shape))))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.mean(y_pred)

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        config = super().get_config()
        config.update({
            "network": ser(self.network), "interpolant": ser(self.interpolant),
            "conditioning": ser(self.conditioning), "t_min": self.t_min,
            "t_max": self.t_max, "seed": self.seed,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("network", "interpolant", "conditioning"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
