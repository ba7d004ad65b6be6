"""Which devices the Keras backend can use, and how many images one network call takes there.

Part of the private CAM engine (:mod:`helpers._engine`); :func:`helpers.report_environment` reads
:func:`accelerators` too.
"""

from __future__ import annotations

import keras

__all__ = ["ACCELERATOR_CHUNK_INPUT_VALUES", "BACKWARD_CHUNK_INPUT_VALUES", "CHUNK_INPUT_VALUES",
           "accelerators", "chunk_input_values"]

#: On the CPU, images go through the network in chunks of at most this many input values (16
#: photos at 224 × 224): a batch's activations, not its input, fill memory, and TensorFlow's CPU
#: allocator keeps the largest it has needed, so small chunks keep a Binder kernel small at
#: almost no cost in speed (README, "Performance" and "Memory").
CHUNK_INPUT_VALUES = 16 * 224 * 224 * 3
#: The same for a backward pass down to the input (guided backpropagation): it keeps every
#: layer's activations of the chunk, so 4 photos (20 photos: +184 MiB peak instead of +460 MiB,
#: at the same speed).
BACKWARD_CHUNK_INPUT_VALUES = 4 * 224 * 224 * 3
#: On a GPU or TPU (the device's own memory, not the host's) chunks hold up to 256 photos: a GPU
#: needs large batches to be busy.
ACCELERATOR_CHUNK_INPUT_VALUES = 256 * 224 * 224 * 3

#: Whether the backend sees a GPU or TPU, asked once per backend.
HAS_ACCELERATOR: dict[str, bool] = {}


def accelerators() -> list[str]:
    """Names of the GPUs/TPUs the current Keras backend can use (empty on a CPU-only machine)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform != "cpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def chunk_input_values(backward: bool = False) -> int:
    """Input values per network call: :data:`ACCELERATOR_CHUNK_INPUT_VALUES` when the Keras
    backend sees a GPU or TPU, else :data:`CHUNK_INPUT_VALUES`, or
    :data:`BACKWARD_CHUNK_INPUT_VALUES` for a pass back to the input (looked up when called, so a
    test may change any)."""
    backend = keras.backend.backend()
    if backend not in HAS_ACCELERATOR:
        HAS_ACCELERATOR[backend] = bool(accelerators())
    if HAS_ACCELERATOR[backend]:
        return ACCELERATOR_CHUNK_INPUT_VALUES
    return BACKWARD_CHUNK_INPUT_VALUES if backward else CHUNK_INPUT_VALUES
