"""PyTorch train step: autograd backward, eager (or torch.compile via Keras)."""

import keras
import torch


def global_rng_state():
    """Torch's global generator state: keras' unseeded dropout draws from it."""
    state = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state.append(torch.cuda.get_rng_state_all())
    return state


def set_global_rng_state(state):
    torch.set_rng_state(state[0])
    if len(state) > 1:
        torch.cuda.set_rng_state_all(state[1])


def jvp(fn, primals, tangents):
    """Forward-mode `(fn(*primals), J tangents)` with dual tensors.

    `torch.func.jvp` (behind `keras.ops.jvp`) forbids the in-place update of
    the dropout seed state inside the transformed function; forward-mode AD
    with `torch.autograd.forward_ad` allows it. Run without building an
    autograd graph: the tangent is a stop-gradient target.
    """
    import torch.autograd.forward_ad as fwad

    with torch.no_grad(), fwad.dual_level():
        duals = [fwad.make_dual(p, t) for p, t in zip(primals, tangents)]
        primal, tangent = fwad.unpack_dual(fn(*duals))
        if tangent is None:
            tangent = torch.zeros_like(primal)
        return primal.detach(), tangent.detach()

def export_defaults(format, input_signature):
    """Extra `keras.Model.export` arguments of the generator export.

    `torch.export` fixes every dimension of the sample inputs unless told
    otherwise: the batch dimension (shared by the noise and the labels) is
    made dynamic, so the exported program takes any batch size.
    """
    if format != "torch":
        return {}
    batch = torch.export.Dim("batch", min=1)
    return {"dynamic_shapes": [tuple({0: batch} for _ in input_signature)]}


def draw_for_replica(draw, batch_size):
    """`draw(batch_size)`: the torch backend trains on one device."""
    return draw(batch_size)


def compile_inference(fn):
    """Runs `fn(values, *inputs)` without building an autograd graph."""

    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


class ConsistencyTrainer:
    """Torch `train_step`: gradient of the consistency loss, optimizer, EMA."""

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        self.zero_grad()
        with torch.no_grad():
            saved = self._save_guarded_state()
        loss, aux = self.compute_consistency_loss(x, training=True, class_labels=y)
        scaled = self.optimizer.scale_loss(loss)
        scaled.backward()
        weights = self.trainable_variables
        grads = [v.value.grad for v in weights]
        with torch.no_grad():
            self.optimizer.apply(grads, weights)
            self._ema_update()
            # A non-finite step keeps the previous weights, moments and EMA.
            finite = self._skip_non_finite(loss.detach(), grads, saved)
        logs = self._update_trackers(
            loss.detach(), {k: v.detach() for k, v in aux.items()}, finite
        )
        return self._skip_logs(logs, [c.value for c in self._skip_counters()])

    def test_step(self, data):
        """`evaluate`: the loss on fixed draws (`compute_evaluation_loss`), no gradient."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        with torch.no_grad():
            loss, aux = self.compute_evaluation_loss(x, class_labels=y)
            return self._update_trackers(loss, aux)
