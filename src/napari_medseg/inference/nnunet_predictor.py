"""nnU-Net v2 prediction: a trained-model folder run on a :class:`~napari_medseg.io.Volume`.

The pipeline is nnU-Net's ``nnUNetPredictor``, composed of this package's stages:
preprocessing (:mod:`.preprocessing`: transpose, crop to non-zero, normalise, resample),
the sliding window (:mod:`.sliding_window`: Gaussian weighting, mirroring, fold
ensembling), export (:mod:`.resample`: class scores back to the cropped grid, argmax,
uncrop, transpose back). The network and plans come from
:mod:`napari_medseg.models.nnunet` (the trainer class named in a checkpoint is never
imported); the parity tests check the result against nnunetv2.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import InvalidInputError, WeightsNotFoundError
from ..models.nnunet.folder import available_folds, configuration_from_name
from ..models.nnunet.plans import NnUNetPlans, label_names, load_plans, read_json
from ..progress import check_cancel, report, sub_progress
from .allocator import reuse_freed_memory
from .device import autocast_enabled, choose_device
from .memory import check_memory as _check_memory
from .memory import estimate_nnunet_bytes
from .preprocessing import preprocess_case
from .resample import (ConfidenceMaps, class_argmax, compute_new_shape, resample_like_nnunet,
                       resample_logits_to_labels)
from .runtimes import (RuntimeReport, check_runtime, compile_module, conversion_pays,
                       resolve_runtime)
from .sliding_window import count_windows, mirror_combinations, sliding_window_logits

__all__ = ["NnUNetPredictor"]

log = logging.getLogger(__name__)


def _reorient_to_ras(volume) -> tuple:
    """Permutation and flips taking a Volume's (z, y, x) array to nibabel's RAS canonical order.

    nnU-Net's ``NibabelIOWithReorient`` reorients to RAS (``as_closest_canonical``)
    and transposes to (S, A, R). Returns ``(axes, flips, spacing_zyx)`` with
    ``array.transpose(axes)`` then flipping the axes in ``flips``.
    """
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    d = lps_to_ras @ volume.direction_matrix  # column m: RAS direction of index axis m (x, y, z)
    phys = np.argmax(np.abs(d), axis=0)
    if sorted(phys.tolist()) != [0, 1, 2]:
        raise InvalidInputError("the image orientation is too oblique to reorient to RAS")
    axes, flips, spacing = [], [], []
    for t in range(3):  # target array axis t holds physical axis 2 - t (S, A, R)
        m = int(np.where(phys == 2 - t)[0][0])
        axes.append(2 - m)
        spacing.append(volume.spacing[m])
        if d[2 - t, m] < 0:
            flips.append(t)
    return tuple(axes), tuple(flips), tuple(spacing)


class _CompiledUNet:
    """A U-Net whose ``forward_features`` (encoder and decoder up to the last decoder
    features) runs compiled, while ``head`` (the 1x1 seg layer, per class block) stays
    the torch matrix product: the sliding window's feature-level mirroring and
    class-block scoring work unchanged.

    One fold's compiled model is held at a time (``load_fold`` drops the previous one
    first), so a five-fold ensemble never holds five compiled copies. While a compiled
    model runs, the torch encoder and decoder weights are freed (the predictor's
    ``release`` callback; only the seg head stays); a failure while running restores them
    (``restore``) and falls back to the torch network for the rest of the run.

    ``passes`` (windows x mirrored variants of the current run) is what ``auto`` weighs
    against a fold's one-off conversion (:func:`~.runtimes.conversion_pays`).
    """

    def __init__(self, network: Any, input_shape: tuple):
        self.network = network
        self.input_shape = tuple(input_shape)
        self.report: Optional[RuntimeReport] = None
        self.passes = 0
        self._fn = None
        self._fold: Optional[int] = None
        self.release = lambda: None
        self.restore = lambda: None

    def load_fold(self, fold: int, weights_key: str) -> None:
        if self.report.used != "openvino":
            return
        if self._fn is not None and self._fold == fold:
            self.report.cache_hits += 1  # still compiled from the previous run: nothing to do
            self.release()
            return
        from .runtimes.openvino import MethodModule

        self._fn = None  # free the previous fold's compiled model before building the next
        self.restore()  # converting needs the weights (a cache hit only their hash)
        module = MethodModule(self.network, "forward_features")
        if not conversion_pays(self.report, module, self.input_shape, passes=self.passes,
                               weights_key=weights_key):
            self._fold = None  # auto: not worth converting in this run; torch runs it
            return
        self._fn = compile_module(module, self.input_shape, report=self.report,
                                  what="nnU-Net network", weights_key=weights_key)
        self._fold = fold if self._fn is not None else None
        if self._fn is not None:
            self.release()

    def release_memory(self) -> None:
        """Free the compiled model's activation buffers (reallocated by the next window)."""
        if self._fn is not None and hasattr(self._fn, "release_memory"):
            self._fn.release_memory()

    def forward_features(self, x):
        if self._fn is None or self.report.used != "openvino":
            return self.network.forward_features(x)
        import torch

        try:
            if x.shape[0] == 1:
                return self._fn(x)
            return torch.cat([self._fn(x[i:i + 1]) for i in range(x.shape[0])])
        except Exception as exc:  # a runtime error in the compiled model: torch finishes the job
            self.report.fall_back(f"OpenVINO failed while running ({type(exc).__name__}: {exc})")
            self._fn = None
            self.restore()
            return self.network.forward_features(x)

    def head(self, features, classes: slice = slice(None)):
        return self.network.head(features, classes)

    def __call__(self, x):
        return self.head(self.forward_features(x))


class NnUNetPredictor:
    """An nnU-Net v2 trained model (one configuration, one or more folds), ready to predict.

    Build it with :meth:`from_folder`. ``labels`` maps output ids to names.
    """

    def __init__(self, folder: Path, plans: NnUNetPlans, dataset_json: dict, network: Any,
                 fold_state_dicts: list, folds: list, mirror_axes: Optional[tuple], device: Any,
                 trainer_name: Optional[str] = None, checkpoint_paths: Sequence = ()):
        self.folder = Path(folder)
        self.plans = plans
        self.dataset_json = dataset_json
        self.network = network
        self._fold_state_dicts = fold_state_dicts
        self.folds = list(folds)
        self.mirror_axes = mirror_axes
        self.device = device
        self.trainer_name = trainer_name
        self.labels: dict = label_names(dataset_json, str(self.folder / "dataset.json"))
        self._loaded_fold: Optional[int] = 0
        #: Mirrored variants per forward pass; None = as many as fit in
        #: :attr:`activation_budget` bytes (1 = nnU-Net's way, lowest memory).
        self.mirror_batch: Optional[int] = None
        #: Bytes of network activations allowed for one batched forward pass.
        self.activation_budget = 1.5 * 2**30
        #: "nnunet": reproduce nnU-Net's float16 score accumulation and export rounding
        #: (voxel-identical output); "float32": full precision throughout.
        self.precision = "nnunet"
        #: "auto" (OpenVINO on the CPU when installed and cached or repaid by the run's
        #: window passes, see :func:`~.runtimes.conversion_pays`), "openvino" or "torch".
        self.runtime = "auto"
        #: What ran the network in the last :meth:`predict` (runtime, fallback reason,
        #: conversion seconds, cache hits).
        self.runtime_report: Optional[RuntimeReport] = None
        self._compiled: Optional[_CompiledUNet] = None
        self._weights_keys: dict = {}
        #: Checkpoint file of each fold: a one-fold model keeps its weights only in the
        #: network, so weights freed for a compiled model are read back from here.
        self._checkpoint_paths = [Path(p) for p in checkpoint_paths]
        #: Shapes of the torch parameters freed while a compiled model runs (name -> shape).
        self._released: dict = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_folder(cls, folder: Union[str, Path], folds: Optional[Sequence] = None,
                    checkpoint: str = "checkpoint_final.pth", device: Any = "auto",
                    configuration: Optional[str] = None, runtime: str = "auto") -> "NnUNetPredictor":
        """Load a trained-model folder (dataset.json, plans.json, fold_*/checkpoint).

        Parameters
        ----------
        folder : str or Path
            ``.../DatasetXXX_Name/{trainer}__{plans}__{configuration}``.
        folds : sequence of int or "all", optional
            Folds to ensemble (default: every fold with ``checkpoint``).
        checkpoint : str
            File name inside each ``fold_N`` folder.
        device : str or torch.device
            ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        configuration : str, optional
            Defaults to the checkpoint's, else the folder name's.
        runtime : {"auto", "openvino", "torch"}
            What runs the network on the CPU: ``openvino`` (compiled once per weights
            and patch size, cached on disk; every failure falls back to PyTorch, see
            :attr:`runtime_report`) or ``torch``; ``auto`` takes OpenVINO when it is
            installed and the compiled model is cached or the run has enough window passes
            to repay its conversion (``runtimes.conversion_pays``), else PyTorch with the
            reason in :attr:`runtime_report`. GPUs use PyTorch.

        Raises
        ------
        WeightsNotFoundError, InvalidInputError, UnsafeCheckpointError, CheckpointMismatchError
        """
        import torch

        from ..models.nnunet.checkpoint import read_fold_checkpoint
        from ..models.nnunet.network import build_network
        from ..models.safe_load import load_state_dict_strict

        runtime = check_runtime(runtime)
        folder = Path(folder)
        if not folder.is_dir():
            raise WeightsNotFoundError(f"nnU-Net model folder not found: {folder}")
        dataset_json = read_json(folder / "dataset.json", "dataset.json")
        plans_dict = read_json(folder / "plans.json", "plans.json")
        if folds is None:
            folds = available_folds(folder, checkpoint)
            if not folds:
                raise WeightsNotFoundError(
                    f"no fold_N/{checkpoint} in {folder}; copy the fold folders of the trained "
                    "model next to plans.json"
                )
        folds = [f if f == "all" else int(f) for f in folds]
        ckpts = []
        for f in folds:
            path = folder / f"fold_{f}" / checkpoint
            if not path.is_file():
                raise WeightsNotFoundError(f"checkpoint of fold {f} not found: {path}")
            ckpts.append(read_fold_checkpoint(path))

        configuration = configuration or ckpts[0].configuration or configuration_from_name(folder)
        if configuration is None:
            raise InvalidInputError(
                f"cannot tell which configuration {folder} holds; pass configuration='3d_fullres' (or other)"
            )
        plans = load_plans(plans_dict, configuration, str(folder / "plans.json"))
        plans.check_supported(str(folder))

        labels = label_names(dataset_json, str(folder / "dataset.json"))
        channels = dataset_json.get("channel_names", dataset_json.get("modality", {"0": "CT"}))
        network = build_network(plans.architecture, len(channels), len(labels),
                                str(folder / "plans.json"))
        for f, ck in zip(folds, ckpts):
            load_state_dict_strict(network, ck.state_dict, f"fold_{f}/{checkpoint}")
        if len(ckpts) > 1:
            # same architecture: keep only the tensors of folds 1.. (fold 0 is in the network)
            network.load_state_dict(ckpts[0].state_dict, strict=True)
        dev = device if isinstance(device, torch.device) else choose_device(str(device))
        network = network.to(dev).eval()
        # one fold: its weights live in the network only (no second copy in memory)
        state_dicts = [ck.state_dict for ck in ckpts] if len(ckpts) > 1 else [None]
        model = cls(folder, plans, dataset_json, network, state_dicts, folds,
                    ckpts[0].mirror_axes, dev, ckpts[0].trainer_name,
                    checkpoint_paths=[folder / f"fold_{f}" / checkpoint for f in folds])
        model.runtime = runtime
        log.info("loaded nnU-Net model %s (%s, folds %s) on %s", folder, configuration, folds, dev)
        return model

    # ---------------------------------------------------------------- properties
    @property
    def num_input_channels(self) -> int:
        channels = self.dataset_json.get("channel_names", self.dataset_json.get("modality", {"0": "CT"}))
        return len(channels)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def configuration(self) -> str:
        return self.plans.configuration_name

    def _set_fold(self, fold_index: int) -> None:
        if self._loaded_fold != fold_index and self._fold_state_dicts[fold_index] is not None:
            self._restore_torch_weights(load=False)
            self.network.load_state_dict(self._fold_state_dicts[fold_index], strict=True)
            self._loaded_fold = fold_index

    def _release_torch_weights(self) -> None:
        """Free the encoder/decoder weights of the torch network (a compiled model holds
        its own copy); the seg head stays, the sliding window runs it in torch."""
        import torch

        keep = {id(p) for p in self.network.decoder.seg_layers[-1].parameters()}
        for name, p in self.network.named_parameters():  # each aliased tensor once
            if id(p) not in keep and p.numel():
                self._released[name] = tuple(p.shape)
                p.data = torch.empty(0, dtype=p.dtype, device=p.device)

    def _restore_torch_weights(self, load: bool = True) -> None:
        """Give the freed parameters back their shapes and (``load``) the loaded fold's
        weights: from memory for an ensemble, else read again from the checkpoint."""
        if not self._released:
            return
        import torch

        for name, p in self.network.named_parameters():
            if name in self._released:
                p.data = torch.empty(self._released[name], dtype=p.dtype, device=p.device)
        self._released = {}
        if not load:
            return  # the caller loads a fold's state dict next
        fold = self._loaded_fold or 0
        state = self._fold_state_dicts[fold]
        if state is None:
            from ..models.nnunet.checkpoint import read_fold_checkpoint

            path = self._checkpoint_paths[fold]
            log.info("reading the torch weights again from %s (OpenVINO fallback)", path)
            state = read_fold_checkpoint(path).state_dict
        self.network.load_state_dict(state, strict=True)

    def _fold_weights_key(self, fold: int) -> str:
        """Load fold ``fold`` into the network and return the hash of its weights (the
        compiled-model cache key's weights part; computed once per fold)."""
        self._set_fold(fold)
        if fold not in self._weights_keys:
            from .runtimes.cache import weights_hash

            self._restore_torch_weights()
            self._weights_keys[fold] = weights_hash(self.network)
        return self._weights_keys[fold]

    def to(self, device: Any) -> "NnUNetPredictor":
        """Move the network to another device (``"cpu"``, ``"cuda"``, ...)."""
        import torch

        self._compiled = None
        self._restore_torch_weights()
        dev = device if isinstance(device, torch.device) else choose_device(str(device))
        self.network = self.network.to(dev)
        self.device = dev
        return self

    # ---------------------------------------------------------------- prediction
    def estimate_memory(self, shape_zyx: Sequence[int], spacing_zyx: Sequence[float]) -> int:
        """Estimated peak bytes of :meth:`predict` on an image of this shape."""
        tf = self.plans.transpose_forward
        shape_t = [shape_zyx[i] for i in tf]
        spacing_t = [spacing_zyx[i] for i in tf]
        net_shape = compute_new_shape(shape_t, spacing_t, self.plans.spacing)
        feats = self.plans.architecture["arch_kwargs"].get("features_per_stage", [32])
        return estimate_nnunet_bytes(shape_t, net_shape, self.num_classes, self.plans.patch_size,
                                     self.num_input_channels, int(np.atleast_1d(feats)[0]))

    def predict_with_confidence(self, volume: Any, *, temperature: float = 1.0, progress=None,
                                cancel=None, use_mirroring: bool = True,
                                tile_step_size: float = 0.5, check_memory: bool = True) -> tuple:
        """Segment ``volume`` and say how sure the model is, voxel by voxel.

        The labels are exactly those of :meth:`predict`. The maps are computed from the
        same class scores while they are resampled and arg-maxed (class by class, no
        classes x voxels probability array), plus, for a fold ensemble, each fold's own
        label on the network's grid.

        Parameters
        ----------
        volume, progress, cancel, use_mirroring, tile_step_size, check_memory
            As for :meth:`predict`.
        temperature : float
            Softmax temperature (> 0; 1 = the network's own probabilities); fitted with
            ``medseg calibrate``. It changes the maps, never the labels.

        Returns
        -------
        labels : numpy.ndarray
            As :meth:`predict` returns them.
        confidence : ConfidenceMaps
            float32 maps on the volume's grid.
        """
        return self.predict(volume, progress=progress, cancel=cancel, use_mirroring=use_mirroring,
                            tile_step_size=tile_step_size, check_memory=check_memory,
                            _confidence=True, _temperature=temperature)

    def predict(self, volume: Any, *, progress=None, cancel=None, use_mirroring: bool = True,
                tile_step_size: float = 0.5, check_memory: bool = True, _confidence: bool = False,
                _temperature: float = 1.0) -> np.ndarray:
        """Segment ``volume`` and return label ids on its voxel grid.

        Parameters
        ----------
        volume : Volume or sequence of Volume
            The image (one Volume per input channel of the model, on one grid).
        progress : callable, optional
            ``progress(fraction, text)``.
        cancel : CancelToken or threading.Event, optional
            Checked between windows; raises :class:`~napari_medseg.errors.Cancelled`.
        use_mirroring : bool
            Test-time mirroring over the axes the model allows (nnU-Net's default).
        tile_step_size : float
            Window overlap (0.5 = half a patch, nnU-Net's default).
        check_memory : bool
            Refuse up front when the estimate exceeds the available memory.

        Returns
        -------
        numpy.ndarray
            uint8 (uint16 for more than 254 classes), shape (z, y, x) of the volume.
        """
        volumes = list(volume) if isinstance(volume, (list, tuple)) else [volume]
        if len(volumes) != self.num_input_channels:
            raise InvalidInputError(
                f"this model takes {self.num_input_channels} input channel(s) "
                f"({', '.join(map(str, self.dataset_json.get('channel_names', {}).values()))}); "
                f"got {len(volumes)} image(s)"
            )
        ref = volumes[0]
        for other in volumes[1:]:
            ref.check_same_grid(other, "input channels")
        for v in volumes:
            arr = np.asarray(v.array)
            if arr.dtype.kind not in "biuf":
                raise InvalidInputError(f"image voxels must be numbers, got dtype {arr.dtype}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise InvalidInputError(
                    "the image contains NaN or infinite voxels; fix or mask them before segmenting"
                )
        if min(ref.shape) < 1:
            raise InvalidInputError(f"the image is empty (shape {ref.shape})")

        reorient = self.plans.image_reader_writer == "NibabelIOWithReorient"
        if reorient:
            axes, flips, spacing_zyx = _reorient_to_ras(ref)
            data = np.stack([np.flip(np.transpose(np.asarray(v.array), axes), flips) for v in volumes])
        else:
            spacing_zyx = ref.spacing_zyx
            data = np.stack([np.asarray(v.array) for v in volumes])
        labels = self.predict_array(data, spacing_zyx, progress=progress, cancel=cancel,
                                    use_mirroring=use_mirroring, tile_step_size=tile_step_size,
                                    check_memory=check_memory, confidence=_confidence,
                                    temperature=_temperature)
        conf = None
        if _confidence:
            labels, conf = labels
        if reorient:
            def back(a):
                return np.ascontiguousarray(np.transpose(np.flip(a, flips), np.argsort(axes)))

            labels = back(labels)
            conf = conf.transformed(back) if conf is not None else None
        return labels if not _confidence else (labels, conf)

    def predict_array(self, data: np.ndarray, spacing_zyx: Sequence[float], *, progress=None,
                      cancel=None, use_mirroring: bool = True, tile_step_size: float = 0.5,
                      check_memory: bool = True, confidence: bool = False,
                      temperature: float = 1.0):
        """Segment a (C, Z, Y, X) array with the given spacing (nnU-Net's axis convention).

        ``confidence=True`` returns ``(labels, ConfidenceMaps)`` (see
        :meth:`predict_with_confidence`).
        """
        with reuse_freed_memory():
            return self._predict_array(data, spacing_zyx, progress=progress, cancel=cancel,
                                       use_mirroring=use_mirroring, tile_step_size=tile_step_size,
                                       check_memory=check_memory, confidence=confidence,
                                       temperature=temperature)

    def _predict_array(self, data, spacing_zyx, *, progress, cancel, use_mirroring, tile_step_size,
                       check_memory, confidence=False, temperature=1.0):
        import torch

        data = np.asarray(data)
        if data.ndim != 4:
            raise InvalidInputError(f"expected a (channels, z, y, x) array, got shape {data.shape}")
        if check_memory:
            _check_memory(self.estimate_memory(data.shape[1:], spacing_zyx),
                          f"nnU-Net prediction ({self.configuration}) of a "
                          f"{'x'.join(map(str, data.shape[1:]))} image")
        check_cancel(cancel)
        report(progress, 0.0, "preprocessing")
        pre, geom = preprocess_case(data, spacing_zyx, self.plans)
        check_cancel(cancel)
        report(progress, 0.08, "predicting")
        mirror = self.mirror_axes if use_mirroring else None
        fold_labels = confidence and len(self._fold_state_dicts) > 1
        logits = self._sliding_window(sliding_window_logits, torch.from_numpy(pre), mirror,
                                      tile_step_size, progress, cancel, fold_labels=fold_labels)
        del pre
        per_fold = None
        if fold_labels:
            logits, per_fold = logits
        check_cancel(cancel)
        kw = self.plans.probabilities_resampling_kwargs
        resampling = dict(
            order=int(kw.get("order", 1)), order_z=int(kw.get("order_z", 0)),
            force_separate_z=kw.get("force_separate_z"),
            separate_z_anisotropy_threshold=float(kw.get("separate_z_anisotropy_threshold", 3)))

        disagreement = None
        if per_fold:
            # fraction of folds whose own label differs from the ensemble's, on the
            # network's grid (one uint8 image per fold), resampled like the scores
            ensemble = class_argmax(logits)
            count = torch.zeros(ensemble.shape, dtype=torch.uint8)
            for fold_label in per_fold:
                count += fold_label != ensemble
            del ensemble, per_fold
            disagreement = count.numpy().astype(np.float32)[None] / len(self._fold_state_dicts)
            disagreement = resample_like_nnunet(disagreement, geom.shape_after_cropping,
                                                geom.target_spacing, geom.original_spacing,
                                                **resampling)[0]

        out_dtype = np.uint8 if self.num_classes - 1 < 255 else np.uint16
        seg = resample_logits_to_labels(
            logits, geom.shape_after_cropping, geom.target_spacing, geom.original_spacing,
            **resampling, out_dtype=out_dtype, round_fp16=self.precision == "nnunet",
            progress=sub_progress(progress, 0.9, 0.99), cancel=cancel,
            confidence=confidence, temperature=temperature,
        )
        del logits
        box = tuple(slice(a, b) for a, b in geom.bbox)
        back = self.plans.transpose_backward

        def uncrop(a, fill, dtype):
            # outside nnU-Net's crop the label is background with probability 1
            full = np.full(geom.shape_before_cropping, fill, dtype=dtype)
            full[box] = a
            return np.ascontiguousarray(full.transpose(back))

        conf = None
        if confidence:
            seg, max_prob, entropy = seg
            conf = ConfidenceMaps(
                uncrop(max_prob, 1.0, np.float32), uncrop(entropy, 0.0, np.float32),
                None if disagreement is None else uncrop(disagreement, 0.0, np.float32),
                temperature=float(temperature), n_classes=self.num_classes,
                n_folds=len(self._fold_state_dicts))
            del max_prob, entropy, disagreement
        full = uncrop(seg, 0, out_dtype)
        report(progress, 1.0, "done")
        return full if conf is None else (full, conf)

    def activation_bytes_per_sample(self) -> int:
        """Rough memory of one forward pass of one patch (float32): activations of the
        full-resolution stages plus the class-score output and its flipped copies."""
        feats = self.plans.architecture["arch_kwargs"].get("features_per_stage", [32])
        first = int(np.atleast_1d(feats)[0])
        return int(np.prod(self.plans.patch_size)) * (first * 8 + self.num_classes * 3) * 4

    def _choose_mirror_batch(self, n_variants: int) -> int:
        if self.mirror_batch is not None:
            return max(1, int(self.mirror_batch))
        per = max(1, self.activation_bytes_per_sample())
        fit = int(self.activation_budget // per)
        for b in (8, 4, 2):
            if b <= fit and b <= n_variants:
                return b
        return 1

    def _sliding_window(self, fn, data, mirror, tile_step_size, progress, cancel,
                        fold_labels: bool = False):
        import torch

        n_variants = len(mirror_combinations(mirror)) + 1
        batch = self._choose_mirror_batch(n_variants)
        # CPU convolutions (oneDNN) are faster on channels-last tensors; same maths
        if self.device.type == "cpu":
            self.network = self.network.to(memory_format=torch.channels_last_3d)
        report = resolve_runtime(self.runtime, self.device, family="nnunet")
        self.runtime_report = report
        network, set_fold = self.network, self._set_fold
        compiled = None
        shape = (1, self.num_input_channels, *map(int, self.plans.patch_size))
        # forward passes per compiled model (one per fold): what auto weighs a conversion against
        passes = n_variants * count_windows(data.shape[1:], self.plans.patch_size, tile_step_size)
        kept = (self._compiled is not None and self._compiled.input_shape == shape
                and self._compiled._fn is not None)
        if report.used == "openvino" and report.requested == "auto" and not kept:
            from .runtimes.openvino import MethodModule

            # decided before the first window, so a run auto keeps on PyTorch takes the
            # torch path below (batched mirrors), not the compiled path's one-by-one calls
            conversion_pays(report, MethodModule(self.network, "forward_features"), shape,
                            passes=passes, weights_key=self._fold_weights_key(0))
        if report.used == "openvino":
            if self._compiled is None or self._compiled.input_shape != shape:
                self._compiled = _CompiledUNet(self.network, shape)
            compiled = self._compiled
            compiled.network, compiled.report = self.network, report
            compiled.release = self._release_torch_weights
            compiled.restore = self._restore_torch_weights
            compiled.passes = passes
            network, batch = compiled, 1  # compiled for one window: mirrors run one by one

            def set_fold(fold: int) -> None:
                compiled.load_fold(fold, self._fold_weights_key(fold))
        else:
            self._compiled = None  # a compiled model for another runtime choice: free it
            self._restore_torch_weights()
        try:
            return fn(
                network, data, patch_size=self.plans.patch_size, num_classes=self.num_classes,
                tile_step_size=tile_step_size, mirror_axes=mirror, device=self.device,
                autocast=autocast_enabled(self.device), mirror_batch=batch,
                progress=sub_progress(progress, 0.08, 0.9), cancel=cancel,
                n_folds=len(self._fold_state_dicts), set_fold=set_fold,
                emulate_fp16=self.precision == "nnunet",
                **({"fold_labels": True} if fold_labels else {}),
            )
        finally:
            if compiled is not None:
                # the activation buffers are not needed while the scores are exported
                compiled.release_memory()

    def __repr__(self) -> str:
        return (f"NnUNetPredictor({self.folder.name!r}, configuration={self.configuration!r}, "
                f"folds={self.folds}, classes={self.num_classes}, device={self.device})")
