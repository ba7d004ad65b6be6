"""The private engine behind :mod:`helpers.cam`: everything a reader of the math does not need.

A learner reads :mod:`helpers.cam`; this package makes its short ``keras.ops`` functions fast and
general. Modules:

* :mod:`~helpers._engine.graph`: walk Keras Functional graphs (the only place that reads Keras'
  private graph attributes), inline nested models, fold BatchNormalization into convolutions;
* :mod:`~helpers._engine.heads`: the one head finder (:func:`find_head`, :class:`CAMHead`);
* :mod:`~helpers._engine.inputs`: images checked once (by :mod:`helpers.images`), then
  resized and normalised a chunk at a time; requested classes to a plan;
* :mod:`~helpers._engine.devices`: which accelerators the backend sees, and the chunk size;
* :mod:`~helpers._engine.compile`: compiling per backend, the one cache, precision, counters;
* :mod:`~helpers._engine.autodiff`: pooled and per-position gradients per backend;
* :mod:`~helpers._engine.runner`: the two programs per method and request, the chunk size
  (small on the CPU, large on a GPU), and :func:`run`;
* :mod:`~helpers._engine.saliency`: input gradients with the network's ReLUs swapped for a rule
  of the caller's while the program is traced (guided backpropagation).

The engine imports only :mod:`helpers.checks`, :mod:`helpers.images` and :mod:`helpers.maps`.
Internal API (what :mod:`helpers.cam`, the benchmark and the tests may use; every other module
goes through :mod:`helpers.cam`):

* ``run(method, model, images, classes, top_k, layer, *, upsample, dtype)`` → ``CAMResult``;
* ``input_gradients(model, images, classes, top_k, layer, relu_rule)`` → dict of ``gradients``
  ``(B, K, H, W, C)``, ``class_ids``, ``logits``, ``relus``, ...; ``swapped_relus``;
* ``INPUTS``: the names a method's weights function may read, and what each is;
* ``programs(method, model, plan, layer)`` → ``(network, method program)``, with
  ``Plan(classes, count, size, precision)``; ``to_numpy(outputs)``;
* ``find_head(model, layer, *, pooling)``, ``CAMHead``, ``keras_model_of(model)``;
* ``compiled_forward(model)``: the compiled, folded forward pass (classification baseline);
* ``compile_function(function, variables, signature)``; ``PRECISIONS``;
* ``counters``: ``builds``, ``traces`` and ``network_calls`` so far (tests count with it);
* ``folding(enabled)``: a context manager that switches BatchNorm folding off (or on) for the
  programs built inside it; ``fold_batch_norm(model)``, ``count_folded(model)``.
"""

from helpers._engine.compile import (
    PRECISIONS,
    compile_function,
    compiled_forward,
    counters,
    folding,
)
from helpers._engine.graph import count_folded, fold_batch_norm
from helpers._engine.heads import CAMHead, find_head, keras_model_of
from helpers._engine.runner import INPUTS, Plan, method_inputs, programs, run, to_numpy
from helpers._engine.saliency import input_gradients, swapped_relus

__all__ = [
    "INPUTS",
    "method_inputs",
    "PRECISIONS",
    "CAMHead",
    "Plan",
    "compile_function",
    "compiled_forward",
    "count_folded",
    "counters",
    "find_head",
    "fold_batch_norm",
    "folding",
    "input_gradients",
    "keras_model_of",
    "programs",
    "run",
    "swapped_relus",
    "to_numpy",
]
