"""PyTorch train step: autograd backward, eager (or torch.compile via Keras).

Several processes (`keras_gcm.distribute.initialize`, `torch.distributed`,
e.g. started by `torchrun`): every process trains on its rows of the global
batch and holds a full copy of every variable. Three things keep N
processes equal to one process on the same global batch:

* **Gradients** are averaged over the processes (one flat all-reduce per
  step) before the optimizer, so the update is the gradient of the global
  batch mean; MMD groups stay inside a process (a global batch that is a
  multiple of N x M). The logged loss is the global mean on every process.
* **Noise and times** (`draw_for_replica`): every process draws the global
  batch's values from the shared seed states and keeps its own rows.
* **Dropout**: the dropout seed states are offset by the process id during
  the step and then advanced as if not offset (different masks per process,
  the same states everywhere).

`fit` broadcasts process 0's variables first, so all processes start equal.
"""

import contextlib

import keras
import torch

from keras_gcm import distribute as gcm_distribute

# Added to the first seed word per process: decorrelates dropout masks.
_PROCESS_SEED_STRIDE = 0x9E3779B1 % (2**31 - 1)


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


def _processes():
    """`(rank, world_size)` under `torch.distributed` with > 1 process, else None."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    size = dist.get_world_size()
    return None if size == 1 else (dist.get_rank(), size)


def draw_for_replica(draw, batch_size):
    """This process's rows of `draw(global_batch_size)`.

    On one process `draw(batch_size)`. Under `torch.distributed` every
    process draws for the global batch (processes x `batch_size` rows, equal
    shares) from the shared seed states and keeps its own block of rows.
    """
    processes = _processes()
    if processes is None:
        return draw(batch_size)
    rank, size = processes
    batch_size = int(batch_size)
    values = draw(batch_size * size)
    return keras.tree.map_structure(
        lambda v: v[rank * batch_size:(rank + 1) * batch_size], values
    )


@contextlib.contextmanager
def _process_dropout_seeds(seed_generators, rank):
    """Offsets the dropout seed states by the process id for one step."""
    saved = []
    for generator in seed_generators:
        state = generator.state.value.clone()
        offset = torch.zeros_like(state)
        offset[0] = (rank * _PROCESS_SEED_STRIDE) % (2**31 - 1)
        generator.state.assign(state + offset)
        saved.append((state, offset))
    try:
        yield
    finally:
        for generator, (state, offset) in zip(seed_generators, saved):
            generator.state.assign(generator.state.value - offset)


def _all_reduce_mean(tensors, size):
    """Averages `tensors` (a list) over the processes with one flat all-reduce."""
    flat = torch.cat([t.reshape(-1).to(torch.float32) for t in tensors])
    _collective(torch.distributed.all_reduce, flat)
    flat /= size
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].reshape(t.shape).to(t.dtype))
        start += t.numel()
    return out


# How many times dynamo may compile one code object (one per input shape):
# the SongUNet's shared layer code meets about twenty shapes per step.
_RECOMPILE_LIMIT = 64


def _compile_settings(jit_compile):
    """The `torch.compile` settings our compiled functions run under.

    Keras' torch random ops draw from a `torch.Generator`, which dynamo does
    not trace, so every dropout draw ends a graph and the layers' shared
    `call` code is compiled again for each shape it meets. By default such a
    recompile makes the sizes symbolic, and Inductor then fails on the
    SongUNet ("cannot determine truth value of Relational"); static shapes,
    with a recompile limit above the number of shapes, compile each shape
    once. Eager (`jit_compile` not True): no change.
    """
    if jit_compile is not True:
        return contextlib.nullcontext()
    return torch._dynamo.config.patch(
        automatic_dynamic_shapes=False, recompile_limit=_RECOMPILE_LIMIT)


def compile_inference(fn, jit_compile=False):
    """Runs `fn(values, *inputs)` without building an autograd graph.

    `jit_compile=True` (the model was compiled with `jit_compile=True`, as
    its train step then is): the function goes through `torch.compile`, like
    Keras' own `predict_function`, with static shapes; otherwise it runs
    eagerly.
    """
    if jit_compile is True:
        fn = torch.compile(fn)

    def run(*args):
        with torch.no_grad(), _compile_settings(jit_compile):
            return fn(*args)

    run.compiled = jit_compile is True
    return run


class ConsistencyTrainer:
    """Torch `train_step`: gradient of the consistency loss, optimizer, EMA."""

    def fit(self, *args, **kwargs):
        """Under several processes: equal start, and each process's rows."""
        if _processes() is not None:
            kwargs = _process_fit_arguments(self, args, kwargs)
            args = ()
        with _compile_settings(self.jit_compile):
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with _compile_settings(self.jit_compile):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        with _compile_settings(self.jit_compile):
            return super().predict(*args, **kwargs)

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        processes = _processes()
        self.zero_grad()
        with torch.no_grad():
            saved = self._save_guarded_state()
        seeds = (
            contextlib.nullcontext() if processes is None
            else _process_dropout_seeds(self._dropout_seed_generators(), processes[0])
        )
        with seeds:
            loss, aux = self.compute_consistency_loss(x, training=True, class_labels=y)
        scaled = self.optimizer.scale_loss(loss)
        scaled.backward()
        weights = self.trainable_variables
        grads = [v.value.grad for v in weights]
        loss, aux = loss.detach(), {k: v.detach() for k, v in aux.items()}
        if processes is not None:
            grads = [torch.zeros_like(v.value) if g is None else g
                     for g, v in zip(grads, weights)]
            reduced = _all_reduce_mean(
                grads + [loss.reshape(1)] + [v.reshape(1) for v in aux.values()],
                processes[1],
            )
            grads = reduced[:len(grads)]
            loss = reduced[len(grads)].reshape(())
            aux = {k: v.reshape(()) for k, v in zip(aux, reduced[len(grads) + 1:])}
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


def _process_fit_arguments(model, args, kwargs):
    """`fit`'s arguments for this process: process 0's variables broadcast,
    and array data replaced by this process's rows with the local batch size."""
    if model.built:
        with torch.no_grad():
            for v in model.variables:
                _collective(torch.distributed.broadcast, v.value.data, src=0)
    size = _processes()[1]
    group = model.consistency_loss.group_size
    return gcm_distribute.process_fit_arguments(
        args, kwargs, size * group,
        f"each of the {size} processes trains on its share of every global "
        f"batch, and that share must divide into MMD groups of {group}",
    )


def _collective(op, *args, **kwargs):
    """Runs a torch.distributed collective; a peer that stopped gives a clear error."""
    try:
        return op(*args, **kwargs)
    except RuntimeError as error:
        raise gcm_distribute.peer_failure_error(error) from error
