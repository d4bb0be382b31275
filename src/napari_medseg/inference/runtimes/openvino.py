"""OpenVINO: convert a torch module once per (weights, version, shape, precision), cache it
on disk as IR (``.xml`` + ``.bin``), compile it for the CPU and run it on torch tensors.

Float32 inference is forced (``INFERENCE_PRECISION_HINT=f32``): on CPUs with bfloat16
units OpenVINO would otherwise compute in bfloat16, which is faster but no longer
matches the reference's labels. Threads follow torch's setting (``torch.set_num_threads``,
which ``--threads`` sets), read when a model is compiled.

Instance norms are converted as pooled averages (:class:`PooledInstanceNorm`), not as
OpenVINO's ``MVN``: its float32 mean and variance over a whole 3D feature map drift with
the map's size (measured on a 112x112x128 window: 5e-3 of the output's scale after one
conv + norm, 3.7e-2 at the first stage of a 6-stage U-Net, against 4e-6 for PyTorch),
which flipped 0.23 % of a 118-class network's labels.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .cache import cache_key, compiled_cache_dir, weights_hash

__all__ = ["compile_torch_module", "is_cached", "CompiledNetwork", "MethodModule", "PooledInstanceNorm",
           "pooled_instance_norms"]

log = logging.getLogger(__name__)

PRECISION = "f32"


class MethodModule:
    """Build a torch module whose ``forward`` is another module's method (e.g.
    ``forward_features``), so that method can be traced and converted on its own."""

    def __new__(cls, module: Any, method: str):
        import torch

        class _Bound(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return getattr(self.inner, method)(x)

            def extra_repr(self):
                return f"method={method}"

        _Bound.__qualname__ = f"MethodModule[{type(module).__qualname__}.{method}]"
        return _Bound(module).eval()


class PooledInstanceNorm:
    """An instance norm whose mean and variance average one spatial axis at a time.

    Each average is an ``avg_pool`` whose window spans one whole axis, so every sum has
    at most one axis' length of terms (128, not 2 million) and no graph optimisation
    merges them into one reduction; the variance is two-pass (of ``x - mean``). Same
    maths as :class:`torch.nn.InstanceNorm3d` (``track_running_stats=False``), with
    float32 error at PyTorch's level once compiled. Shares the norm's parameters.
    """

    def __new__(cls, norm: Any):
        import torch
        import torch.nn.functional as F

        pools = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}

        class _Pooled(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def _mean(self, t):
                pool, n = pools[t.dim()], t.dim() - 2
                for axis in range(n - 1, -1, -1):
                    window = [1] * n
                    # a Python int: a traced size makes the window a graph value, which
                    # OpenVINO's avg_pool conversion rejects (2D maps: the hybrid liver net)
                    window[axis] = int(t.shape[2 + axis])
                    t = pool(t, tuple(window))
                return t

            def forward(self, x):
                mean = self._mean(x)
                centred = x - mean
                y = centred * torch.rsqrt(self._mean(centred * centred) + self.inner.eps)
                if self.inner.affine:
                    shape = (1, -1) + (1,) * (x.dim() - 2)
                    y = y * self.inner.weight.view(shape) + self.inner.bias.view(shape)
                return y

        _Pooled.__qualname__ = "PooledInstanceNorm"
        return _Pooled(norm)


class pooled_instance_norms:
    """Within ``with``, every instance norm of ``module`` (without running statistics)
    is a :class:`PooledInstanceNorm` sharing its parameters; put back on exit."""

    def __init__(self, module: Any):
        self.module = module
        self._swapped: list = []

    def __enter__(self):
        import torch

        kinds = (torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d)
        pooled: dict = {}
        for parent in list(self.module.modules()):
            for name, child in list(parent._modules.items()):
                if isinstance(child, kinds) and not child.track_running_stats:
                    # one wrapper per norm: aliases (nnU-Net's all_modules) stay aliases
                    wrapper = pooled.setdefault(id(child), PooledInstanceNorm(child))
                    self._swapped.append((parent, name, child))
                    parent._modules[name] = wrapper
        return self.module

    def __exit__(self, *exc):
        for parent, name, child in reversed(self._swapped):
            parent._modules[name] = child
        self._swapped = []
        return False


class CompiledNetwork:
    """A compiled OpenVINO model called like the torch module it came from.

    Parameters
    ----------
    compiled : openvino.CompiledModel
    input_shape : tuple of int
        The one shape it accepts; another shape raises ``ValueError``.

    Called with one tensor, it returns a tensor, or a list of tensors when the module
    returned several.
    """

    def __init__(self, compiled: Any, input_shape: tuple):
        self.compiled = compiled
        self.input_shape = tuple(input_shape)
        self._request = compiled.create_infer_request()

    def __call__(self, x):
        import torch

        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        if arr.shape != self.input_shape:
            raise ValueError(f"compiled for input {self.input_shape}, got {arr.shape}")
        # outputs are copied out of the request (share_outputs=False): the caller may
        # keep them while the next window runs
        out = self._request.infer({0: arr}, share_inputs=True, share_outputs=False)
        if len(out) == 1:
            return torch.from_numpy(np.asarray(out[0]))
        # a module returning a list or tuple of tensors: the outputs in order
        return [torch.from_numpy(np.asarray(out[i])) for i in range(len(out))]

    def release_memory(self) -> None:
        """Free the activation buffers between runs (the weights stay compiled; the next
        call allocates the buffers again, a few milliseconds)."""
        release = getattr(self.compiled, "release_memory", None)
        if release is not None:
            release()

    def __repr__(self) -> str:
        return f"CompiledNetwork(openvino, input={self.input_shape})"


def _config() -> dict:
    import torch

    return {"INFERENCE_PRECISION_HINT": PRECISION,
            "INFERENCE_NUM_THREADS": int(max(1, torch.get_num_threads())),
            "PERFORMANCE_HINT": "LATENCY"}


_CORE = None


def _core():
    global _CORE
    if _CORE is None:
        import openvino as ov

        _CORE = ov.Core()
    return _CORE


def _cached_xml(module: Any, shape: tuple, weights_key: Optional[str]) -> Path:
    """Where the converted ``module`` for ``shape`` is (or would be) cached."""
    import openvino as ov

    key = cache_key(module, shape, runtime="openvino", runtime_version=ov.__version__,
                    precision=PRECISION, weights_key=weights_key or weights_hash(module))
    return compiled_cache_dir() / f"{key}.xml"


def is_cached(module: Any, input_shape: Sequence[int], *,
              weights_key: Optional[str] = None) -> bool:
    """Whether ``module`` converted for ``input_shape`` is in the disk cache (both files)."""
    xml = _cached_xml(module, tuple(int(s) for s in input_shape), weights_key)
    return xml.is_file() and xml.with_suffix(".bin").is_file()


def compile_torch_module(module: Any, input_shape: Sequence[int], *, report: Any, what: str,
                         weights_key: Optional[str] = None) -> CompiledNetwork:
    """Convert (or read from the cache) and compile ``module`` for ``input_shape``.

    Raises whatever the conversion raises; :func:`..compile_module` turns that into
    a fallback to torch.
    """
    import openvino as ov
    import torch

    shape = tuple(int(s) for s in input_shape)
    t0 = time.perf_counter()
    xml = _cached_xml(module, shape, weights_key)
    folder = xml.parent
    core = _core()
    hit = xml.is_file() and xml.with_suffix(".bin").is_file()
    if hit:
        try:
            model = core.read_model(str(xml))
        except Exception as exc:  # a truncated or foreign file: convert again
            log.warning("cached %s model %s unreadable (%s); converting again", what, xml, exc)
            hit = False
    if not hit:
        log.info("converting the %s to OpenVINO for input %s (once; cached in %s)", what, shape,
                 folder)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # shape checks become constants of the trace: right for one static shape
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                with pooled_instance_norms(module):
                    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

                    example = torch.randn(shape)
                    # traced without torch's trace check, which runs the module twice more
                    # at the full input shape: a third of the conversion's CPU time (hybrid
                    # liver net, 180x210 slab: 8.6 -> 2.9-3.9 s CPU, same compiled output)
                    decoder = TorchScriptPythonDecoder(module, example_input=example,
                                                       trace_kwargs={"check_trace": False})
                    model = ov.convert_model(decoder, example_input=example,
                                             input=[(list(shape), ov.Type.f32)])
        finally:
            module.train(was_training)
        if _save_atomically(model, xml):
            # compile from the file (memory-mapped weights): the converted graph's own
            # copy of the weights is freed before the compiled copy is built
            del model
            model = core.read_model(str(xml))
    t_compile = time.perf_counter()
    compiled = core.compile_model(model, "CPU", _config())
    del model  # the compiled model holds the weights; drop the IR graph's copy now
    dt = time.perf_counter() - t0
    t_compile = time.perf_counter() - t_compile
    report.convert_s += dt
    if hit:
        report.cache_hits += 1
    else:
        report.compiled += 1
    report.shapes.append(shape)
    # the split says where a slow start went: a conversion (once per model) or the
    # per-process compile of a cached model (~2 s for a full-size U-Net)
    log.info("%s %s for %s in %.2f s (%s %.2f s, compile_model %.2f s)",
             "loaded" if hit else "converted and compiled", what, shape, dt,
             "cache key and read" if hit else "key, conversion and save", dt - t_compile,
             t_compile)
    return CompiledNetwork(compiled, shape)


def _save_atomically(model: Any, xml: Path) -> bool:
    """Write ``xml``/``.bin`` under temporary names, then rename (another process
    reading the cache never sees half a model); a write error only loses the cache
    (``False``)."""
    import openvino as ov

    try:
        xml.parent.mkdir(parents=True, exist_ok=True)
        tmp = xml.with_name(f".{xml.stem}.{os.getpid()}.tmp.xml")
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)
    except OSError as exc:
        log.warning("could not cache the converted model in %s (%s); it will be converted "
                    "again next time", xml.parent, exc)
        return False
    return True
