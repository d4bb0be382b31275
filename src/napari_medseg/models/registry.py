"""Model cards: what each named model is, where its weights come from, and what it segments.

A :class:`ModelCard` is plain data (no torch, no network): the weights manager
(:mod:`napari_medseg.models.weights`) reads it to download, verify and find weights;
:func:`napari_medseg.inference.segment.segment` reads it to build and run the model; the
widget and ``medseg weights list`` read it to show the user what is installed.

Kinds: ``"hu-tissue"`` (weights-free), ``"totalseg"`` (TotalSegmentator nnU-Net v2 tasks,
possibly several part models merged into one label map), ``"nnunet"`` (any nnU-Net v2
trained-model folder), ``"sam-med3d"``, ``"3dsam-adapter"``, ``"nninteractive"`` (the
promptable backends' checkpoints), ``"hybrid-liver"`` (trained locally). Each kind is handled
by one :class:`~napari_medseg.models.families.ModelFamily` (:attr:`ModelCard.family`).

Checksums: TotalSegmentator, the SAM-Med3D and nnInteractive authors publish no sha256 for
their files, so those cards have ``sha256=None``. The weights manager then trusts the
first download, records its sha256 in the cache (``hashes.json``) and refuses any later
download or import of the same file that does not match (trust on first use). Where a
publisher gives a hash, it goes into :attr:`RemoteFile.sha256` and is enforced from the
first download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import InvalidInputError
from . import totalseg_classes as tsc
from .families import family_of
from .deepbet import CLASSES as DEEPBET_CLASSES
from .hu_tissue import CLASSES as HU_TISSUE_CLASSES
from .hybrid_liver import CLASSES as HYBRID_LIVER_CLASSES

_TS_RELEASES = "https://github.com/wasserth/TotalSegmentator/releases/download"
_TS_LICENCE = "Apache-2.0 (TotalSegmentator code and open weights)"
_TS_CITATION = (
    "Wasserthal J. et al. TotalSegmentator: Robust Segmentation of 104 Anatomic Structures "
    "in CT Images. Radiology: Artificial Intelligence 2023;5(5):e230024. "
    "doi:10.1148/ryai.230024"
)
_TS_HASH_NOTE = (
    "TotalSegmentator publishes no checksums: the sha256 of the first download is recorded "
    "and every later download or import must match it (trust on first use)."
)


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable artefact of a model.

    Parameters
    ----------
    url : str
        Official https download address.
    target : str
        Path, relative to the card's install root, that the artefact provides: the
        extracted folder for an archive, the file itself otherwise.
    sha256 : str or None
        Published checksum (hex); None when the publisher gives none (trust on first use).
    archive : bool
        True for a zip/tar archive to extract safely into the install root.
    size_mb : float or None
        Approximate download size, for the user.
    """

    url: str
    target: str
    sha256: Optional[str] = None
    archive: bool = False
    size_mb: Optional[float] = None


@dataclass(frozen=True)
class ModelPart:
    """One nnU-Net model of a multi-part task (e.g. a TotalSegmentator ``total`` part).

    ``classes`` are the part model's own ids; ``to_global`` maps them to the task's ids.
    """

    name: str
    dataset_id: int
    folder: str
    classes: dict
    to_global: dict
    file: RemoteFile


@dataclass(frozen=True)
class ModelCard:
    """Everything the project knows about one named model.

    Parameters
    ----------
    name : str
        The name users type (``medseg segment --model NAME``).
    kind : str
        Model family (see the module docstring).
    task : str
        What it segments, in a few words (TotalSegmentator's task name where it has one).
    description : str
        One or two sentences for the model picker.
    classes : dict
        ``{id: name}`` of the label map the model produces (empty when set at run time).
    files : tuple of RemoteFile
        Artefacts of a single-part model (checkpoints, archives); parts carry their own.
    licence, citation : str
        Terms of the weights and how to cite them.
    parts : tuple of ModelPart
        For multi-model tasks (TotalSegmentator ``total``).
    trainer, plans, configuration : str
        The nnU-Net trained-model folder ``{trainer}__{plans}__{configuration}``.
    folds : tuple of int or None
        Folds to ensemble (None: every fold present).
    spacing : tuple of float or None
        The model's working spacing in mm (x, y, z), for information and memory estimates.
    crop : tuple of str
        ``total`` class names that TotalSegmentator first finds with a low-resolution model
        and crops to before running this model (empty: no crop).
    crop_model : str or None
        Card whose output locates ``crop`` (``total-fastest`` or ``total-fast``).
    crop_margin_vox : int
        Margin added around the crop box, in voxels of the input (TotalSegmentator: 20
        when cropping with the rough model).
    install_dir : str
        Folder under the cache (shared between cards whose files overlap).
    checkpoint : str or None
        For single-file checkpoints, the file's path relative to the install root.
    notes : str
        Honest remarks (checksums, manual download, limits).
    temperature : float
        Softmax temperature of the confidence maps (``medseg segment --confidence``);
        1 = the network's own probabilities. Fit one on your labelled cases with
        ``medseg calibrate`` and pass it with ``--temperature``.
    """

    name: str
    kind: str
    task: str
    description: str
    classes: dict = field(default_factory=dict)
    files: tuple = ()
    licence: str = ""
    citation: str = ""
    parts: tuple = ()
    trainer: str = "nnUNetTrainer"
    plans: str = "nnUNetPlans"
    configuration: str = "3d_fullres"
    folds: Optional[tuple] = (0,)
    spacing: Optional[tuple] = None
    crop: tuple = ()
    crop_model: Optional[str] = None
    crop_margin_vox: int = 20
    install_dir: str = ""
    checkpoint: Optional[str] = None
    notes: str = ""
    temperature: float = 1.0

    @property
    def family(self):
        """The :class:`~napari_medseg.models.families.ModelFamily` that handles this card."""
        return family_of(self)

    @property
    def needs_weights(self) -> bool:
        """False for weights-free models."""
        return self.family.needs_weights

    @property
    def remote_files(self) -> tuple:
        """Every artefact to download: the parts' archives, then the card's own files."""
        return tuple(p.file for p in self.parts) + tuple(self.files)

    @property
    def urls(self) -> tuple:
        """Official download addresses (empty when the weights must be supplied by hand)."""
        return tuple(f.url for f in self.remote_files)

    @property
    def sha256(self) -> tuple:
        """Published checksums, one per URL (None where the publisher gives none)."""
        return tuple(f.sha256 for f in self.remote_files)

    @property
    def downloadable(self) -> bool:
        return bool(self.remote_files)

    @property
    def model_folder_name(self) -> str:
        """``{trainer}__{plans}__{configuration}``, nnU-Net's trained-model folder name."""
        return f"{self.trainer}__{self.plans}__{self.configuration}"

    def class_names(self) -> list:
        """Structure names in id order (for pickers and roi_subset validation)."""
        return [self.classes[k] for k in sorted(self.classes)]


# --------------------------------------------------------------------------- cards
def _ts_part(dataset_id: int, folder: str, size_mb: Optional[float],
             release: str = "v2.0.0-weights") -> ModelPart:
    name, classes = {**tsc.TOTAL_PARTS, **tsc.TOTAL_MR_PARTS}[dataset_id]
    return ModelPart(
        name=name,
        dataset_id=dataset_id,
        folder=folder,
        classes=dict(classes),
        to_global=tsc.part_to_global(dataset_id),
        file=RemoteFile(
            url=f"{_TS_RELEASES}/{release}/{folder}.zip",
            target=folder,
            archive=True,
            size_mb=size_mb,
        ),
    )


def _ts_single(folder: str, release: str, size_mb: Optional[float]) -> RemoteFile:
    return RemoteFile(url=f"{_TS_RELEASES}/{release}/{folder}.zip", target=folder, archive=True,
                      size_mb=size_mb)


_SAM_MED3D_HF = "https://huggingface.co/blueyo0/SAM-Med3D/resolve/main"
_NNINTERACTIVE_HF = "https://huggingface.co/nnInteractive/nnInteractive/resolve/main/nnInteractive_v1.0"

_CARDS: dict = {}


def _add(card: ModelCard) -> None:
    _CARDS[card.name] = card


def _ts_card(name: str, task: str, description: str, classes: dict, *, notes: str = "",
             **fields) -> ModelCard:
    """A TotalSegmentator card: shared install folder, licence, citation and checksum note."""
    fields.setdefault("licence", _TS_LICENCE)
    fields.setdefault("citation", _TS_CITATION)
    return ModelCard(name=name, kind="totalseg", task=task, description=description,
                     classes=dict(classes), install_dir="totalsegmentator",
                     notes=_TS_HASH_NOTE + (" " + notes if notes else ""), **fields)


_add(ModelCard(
    name="hu-tissue",
    kind="hu-tissue",
    task="body tissues (CT)",
    description=(
        "Weights-free CT tissue model from Hounsfield units: subcutaneous and visceral fat, "
        "skeletal muscle, bone, lungs, airways and the rest of the body. Runs anywhere in "
        "seconds; no organs."
    ),
    classes=dict(HU_TISSUE_CLASSES),
    licence="Apache-2.0 (part of napari-medseg)",
    notes="Thresholds and morphology, not a trained network: see docs/auto_segmentation.md "
          "for its limits.",
))

_add(_ts_card(
    "total", "total",
    "TotalSegmentator v2 'total': 117 structures at 1.5 mm (five part models: organs, "
    "vertebrae, cardiac, muscles, ribs), merged into one label map.",
    tsc.TOTAL,
    parts=(
        _ts_part(291, "Dataset291_TotalSegmentator_part1_organs_1559subj", 230),
        _ts_part(292, "Dataset292_TotalSegmentator_part2_vertebrae_1532subj", 230),
        _ts_part(293, "Dataset293_TotalSegmentator_part3_cardiac_1559subj", 230),
        _ts_part(294, "Dataset294_TotalSegmentator_part4_muscles_1559subj", 230),
        _ts_part(295, "Dataset295_TotalSegmentator_part5_ribs_1559subj", 230),
    ),
    trainer="nnUNetTrainerNoMirroring",
    spacing=(1.5, 1.5, 1.5),
    crop_model="total-fastest",
    notes="With roi_subset only the part models holding the requested classes run, inside "
          "the box the 6 mm model finds (as TotalSegmentator does).",
))

for _name, _flag, _mm, _dataset, _what in (
        ("total-fast", "--fast", 3, "Dataset297_TotalSegmentator_total_3mm_1559subj",
         "one model, 117 structures, ~10x faster."),
        ("total-fastest", "--fastest", 6, "Dataset298_TotalSegmentator_total_6mm_1559subj",
         "one model, 117 structures, coarse; also used to find the region of interest for "
         "cropped tasks.")):
    _add(_ts_card(
        _name, f"total {_flag}", f"TotalSegmentator v2 'total' at {_mm} mm: {_what}", tsc.TOTAL,
        files=(_ts_single(_dataset, "v2.0.0-weights", 230),),
        trainer="nnUNetTrainer_4000epochs_NoMirroring",
        spacing=(float(_mm),) * 3,
    ))

_add(_ts_card(
    "liver-vessels", "liver_vessels",
    "TotalSegmentator 'liver_vessels' (MSD Task08 hepatic vessels): liver vessels and liver "
    "tumour, inside the liver box found by the 6 mm model.",
    tsc.LIVER_VESSELS,
    files=(_ts_single("Dataset008_HepaticVessel", "v2.4.0-weights", 230),),
    trainer="nnUNetTrainer",
    folds=None,
    crop=("liver",),
    crop_model="total-fastest",
    licence="CC-BY-SA-4.0 (Medical Segmentation Decathlon data); model via TotalSegmentator",
    citation=_TS_CITATION + " Antonelli M. et al. The Medical Segmentation Decathlon. "
                            "Nat Commun 13, 4128 (2022).",
    notes="Needs 'total-fastest' too (to find the liver).",
))

_add(_ts_card(
    "liver-lesions", "liver_lesions",
    "TotalSegmentator 'liver_lesions' (released with the v2.5.0 weights): focal liver lesions "
    "at 0.75 x 0.75 x 1 mm inside the liver box found by the 3 mm model.",
    tsc.LIVER_LESIONS,
    files=(_ts_single("Dataset591_ct_liver_lesions_842subj", "v2.5.0-weights", 230),),
    trainer="nnUNetTrainer",
    configuration="3d_fullres_high",
    spacing=(0.75, 0.75, 1.0),
    crop=("liver",),
    crop_model="total-fast",
    notes="Needs 'total-fast' too (to find the liver). Lesion masks are a detection aid, not "
          "a diagnosis.",
))

# ------------------------------------------------------------------ MR (TotalSegmentator)
# Dataset ids, folders, releases, trainers and spacings from TotalSegmentator 2.18.0
# (map_tasks_config.py: TASK_CONFIGS and TASK_ID_WEIGHTS_CONFIGS); every MR task it serves
# from its GitHub releases (open licence) has a card; the licensed MR tasks do not.
# TotalSegmentator states no download sizes for them, so none is shown.
_TS_MR_CITATION = (
    "Akinci D'Antonoli T. et al. TotalSegmentator MRI: Robust Sequence-independent "
    "Segmentation of Multiple Anatomic Structures in MRI. Radiology 2025;314(2):e241613. "
    + _TS_CITATION
)
_MR_TRAINER = "nnUNetTrainer_2000epochs_NoMirroring"

_add(_ts_card(
    "total-mr", "total_mr",
    "TotalSegmentator MRI 'total_mr': 50 structures at 1.5 mm (two part models: organs, "
    "muscles and bones), merged into one label map. Any MR sequence.",
    tsc.TOTAL_MR,
    parts=(
        _ts_part(850, "Dataset850_TotalSegMRI_part1_organs_1088subj", None, "v2.5.0-weights"),
        _ts_part(851, "Dataset851_TotalSegMRI_part2_muscles_1088subj", None, "v2.5.0-weights"),
    ),
    trainer=_MR_TRAINER,
    spacing=(1.5, 1.5, 1.5),
    crop_model="total-mr-fast",
    citation=_TS_MR_CITATION,
    notes="With roi_subset only the part models holding the requested classes run, inside "
          "the box the 3 mm MR model finds (TotalSegmentator uses the 3 mm model for MR: the "
          "6 mm one is too coarse).",
))
for _name, _mm, _dataset in (
        ("total-mr-fast", 3, "Dataset852_TotalSegMRI_total_3mm_1088subj"),
        ("total-mr-fastest", 6, "Dataset853_TotalSegMRI_total_6mm_1088subj")):
    _add(_ts_card(
        _name, f"total_mr --{_name.rsplit('-', 1)[1]}",
        f"TotalSegmentator MRI 'total_mr' at {_mm} mm: one model, 50 structures.",
        tsc.TOTAL_MR,
        files=(_ts_single(_dataset, "v2.5.0-weights", None),),
        trainer=_MR_TRAINER,
        spacing=(float(_mm),) * 3,
        citation=_TS_MR_CITATION,
    ))
_add(_ts_card(
    "body-mr", "body_mr",
    "TotalSegmentator MRI 'body_mr': body trunk and extremities at 1.5 mm.",
    tsc.BODY_MR,
    files=(_ts_single("Dataset597_mri_body_139subj", "v2.5.0-weights", None),),
    trainer="nnUNetTrainer_DASegOrd0",
    spacing=(1.5, 1.5, 1.5),
    citation=_TS_MR_CITATION,
))
_add(_ts_card(
    "vertebrae-mr", "vertebrae_mr",
    "TotalSegmentator MRI 'vertebrae_mr': sacrum and each vertebra C1-L5 at 1.5 mm.",
    tsc.VERTEBRAE_MR,
    files=(_ts_single("Dataset756_mri_vertebrae_1076subj", "v2.5.0-weights", None),),
    trainer="nnUNetTrainer_DASegOrd0_NoMirroring",
    spacing=(1.5, 1.5, 1.5),
    citation=_TS_MR_CITATION,
))
_add(_ts_card(
    "liver-segments-mr", "liver_segments_mr",
    "TotalSegmentator MRI 'liver_segments_mr': Couinaud liver segments 1-8, inside the liver "
    "box found by the 3 mm MR model.",
    tsc.LIVER_SEGMENTS_MR,
    files=(_ts_single("Dataset576_mri_liver_segments_120subj", "v2.5.0-weights", None),),
    trainer="nnUNetTrainer_DASegOrd0_NoMirroring",
    spacing=(1.1250001788139343, 1.1875, 3.0),
    crop=("liver",),
    crop_model="total-mr-fast",
    crop_margin_vox=10,
    citation=_TS_MR_CITATION,
    notes="Needs 'total-mr-fast' too (to find the liver).",
))
_add(_ts_card(
    "liver-lesions-mr", "liver_lesions_mr",
    "TotalSegmentator 'liver_lesions_mr' (trained on CT and MR): focal liver lesions inside "
    "the liver box found by the 3 mm MR model.",
    tsc.LIVER_LESIONS_MR,
    files=(_ts_single("Dataset589_ct_mri_liver_lesions_750subj", "v2.5.0-weights", None),),
    trainer="nnUNetTrainer_DASegOrd0",
    spacing=(0.8603515625, 0.857421875, 1.0),
    crop=("liver",),
    crop_model="total-mr-fast",
    citation=_TS_MR_CITATION,
    notes="Needs 'total-mr-fast' too (to find the liver). Lesion masks are a detection aid, "
          "not a diagnosis.",
))
_add(_ts_card(
    "brain-aneurysm", "brain_aneurysm",
    "TotalSegmentator 'brain_aneurysm' (MAXIMUS): intracranial aneurysms on time-of-flight "
    "MR angiography only.",
    tsc.BRAIN_ANEURYSM,
    files=(_ts_single("Dataset615_MAXIMUS", "v2.5.0-weights", None),),
    trainer="nnUNetTrainerDiceTopK10Loss_2000epochs",
    folds=None,
    spacing=(0.390625, 0.390625, 0.5000016391277313),
    citation=_TS_MR_CITATION,
    notes="TOF-MRA only (TotalSegmentator's own warning); a detection aid, not a diagnosis.",
))


_add(ModelCard(
    name="deepbet",
    kind="deepbet",
    task="brain extraction (MRI)",
    description="deepbet: brain mask of a T1-weighted head MRI (any orientation), from the "
                "trained networks inside the deepbet package; seconds on a CPU.",
    classes=dict(DEEPBET_CLASSES),
    licence="MIT (deepbet code and networks)",
    citation="Fisch L. et al. deepbet: Fast brain extraction of T1-weighted MRI using "
             "Convolutional Neural Networks. Computers in Biology and Medicine 2024;179:108845.",
    notes="Optional extra: pip install \"napari-medseg[mri]\". Its TorchScript networks are "
          "loaded only from the installed package, after checking them against the hashes "
          "pip recorded; nothing is downloaded.",
))


def _sam_med3d_card(name: str, file: str, description: str, notes: str) -> ModelCard:
    """A SAM-Med3D release: one checkpoint on the authors' Hugging Face repo."""
    return ModelCard(
        name=name,
        kind="sam-med3d",
        task="promptable 3D segmentation",
        description=description,
        files=(RemoteFile(url=f"{_SAM_MED3D_HF}/{file}", target=file, size_mb=391),),
        checkpoint=file,
        install_dir=name,
        licence="Apache-2.0 (SAM-Med3D)",
        citation="Wang H. et al. SAM-Med3D: Towards General-purpose Segmentation Models for "
                 "Volumetric Medical Images. arXiv:2310.15161.",
        notes=notes,
    )


_add(_sam_med3d_card(
    "sam-med3d-turbo", "sam_med3d_turbo.pth",
    "SAM-Med3D-turbo (fine-tuned on 44 datasets): click-prompted 3D segmentation in a 128^3 crop.",
    "Published on the authors' Hugging Face repo blueyo0/SAM-Med3D without a checksum in this "
    "registry: trust on first use.",
))
_add(_sam_med3d_card(
    "sam-med3d", "sam_med3d.pth",
    "SAM-Med3D (original release): click-prompted 3D segmentation in a 128^3 crop.",
    "Trust on first use (no published checksum).",
))

for _ds, _task in (("kits", "kidney tumour"), ("pancreas", "pancreas tumour"),
                   ("lits", "liver tumour"), ("colon", "colon cancer")):
    _add(ModelCard(
        name=f"3dsam-adapter-{_ds}",
        kind="3dsam-adapter",
        task=f"promptable {_task} segmentation",
        description=f"3DSAM-adapter fine-tuned on {_ds.upper() if _ds != 'colon' else 'MSD-Colon'}"
                    f" ({_task}), point-prompted.",
        checkpoint=f"{_ds}/best.pth.tar",
        install_dir=f"3dsam-adapter-{_ds}",
        licence="see the 3DSAM-adapter repository (med-air/3DSAM-adapter); SAM ViT-B is "
                "Apache-2.0",
        citation="Gong S. et al. 3DSAM-adapter: Holistic adaptation of SAM from 2D to 3D for "
                 "promptable tumor segmentation. Medical Image Analysis 2024.",
        notes="The authors share these checkpoints through a cloud-drive folder, not a stable "
              "https file: download best.pth.tar by hand, then run "
              f"`medseg weights import 3dsam-adapter-{_ds} PATH`.",
    ))

_add(ModelCard(
    name="nninteractive",
    kind="nninteractive",
    task="promptable 3D segmentation",
    description="nnInteractive v1.0: points, boxes, scribbles and lasso prompts, any modality.",
    files=tuple(
        RemoteFile(url=f"{_NNINTERACTIVE_HF}/{rel}", target=rel,
                   size_mb=400 if rel.endswith(".pth") else None)
        for rel in ("plans.json", "dataset.json", "inference_session_class.json",
                    "fold_0/checkpoint_final.pth")
    ),
    checkpoint="fold_0/checkpoint_final.pth",
    install_dir="nninteractive",
    licence="CC-BY-NC-SA-4.0 (nnInteractive weights: non-commercial)",
    citation="Isensee F., Rokuss M. et al. nnInteractive: Redefining 3D Promptable "
             "Segmentation. arXiv:2503.08373.",
    notes="Hugging Face repo nnInteractive/nnInteractive, folder nnInteractive_v1.0; trust on "
          "first use. Non-commercial licence.",
))

_add(ModelCard(
    name="hybrid-liver",
    kind="hybrid-liver",
    task="liver and liver lesions",
    description="Liver + lesion model trained on this machine with `medseg train liver-lesion`.",
    classes=dict(HYBRID_LIVER_CLASSES),
    checkpoint="model.pth",
    install_dir="hybrid-liver",
    licence="yours (trained locally)",
    notes="No download: train it with `medseg train liver-lesion`, which writes it into the "
          "cache, or import a trained folder with `medseg weights import hybrid-liver PATH`.",
))


def get_card(name: str) -> ModelCard:
    """The card of ``name``; an :class:`InvalidInputError` listing close names otherwise."""
    key = str(name).strip()
    if key in _CARDS:
        return _CARDS[key]
    alias = key.replace("_", "-").lower()
    if alias in _CARDS:
        return _CARDS[alias]
    raise InvalidInputError(
        f"unknown model {name!r}{suggest(key, list(_CARDS))}; known models: "
        + ", ".join(_CARDS) + " (or pass the path of an nnU-Net v2 model folder)"
    )


def list_cards(kind: Optional[str] = None) -> list:
    """Every card (of one kind, if given), in registry order."""
    return [c for c in _CARDS.values() if kind is None or c.kind == kind]


def automatic_cards() -> list:
    """Cards that :func:`~napari_medseg.inference.segment.segment` can run."""
    return [c for c in _CARDS.values() if c.family.automatic]


def suggest(name: str, candidates, n: int = 3) -> str:
    """``"; did you mean 'a', 'b'?"`` for close matches of ``name`` (empty if none)."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + ", ".join(repr(c) for c in close) + "?"
