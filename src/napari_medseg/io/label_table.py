"""Label tables: which integer id means which structure, and in which colour.

A :class:`LabelTable` is an ordered mapping ``id -> (name, rgba)`` for the non-zero
label ids of a label map (0 is always background and never stored). It converts to
what napari needs (a colour dict for ``DirectLabelColormap`` and a ``features`` table
with an ``index`` column) and to/from the JSON sidecar this project writes next to
every label file::

    {"format": "napari-medseg-labels", "version": 1,
     "labels": [{"id": 1, "name": "liver", "color": [r, g, b, a],
                 "algorithm_type": "AUTOMATIC", "algorithm_name": "total",
                 "code": {"category": ["SCT", "123037004", "Anatomical Structure"],
                          "type": ["SCT", "10200004", "Liver"]}}, ...],
     "geometry": {"shape_zyx": ..., "spacing_xyz": ..., ...}}

Colours are floats in [0, 1]. Ids without an explicit colour get a deterministic
default (:func:`default_color`), so the same id always looks the same.

Each entry may also carry what DICOM-SEG calls the segment's semantics (:class:`SegmentInfo`):

- **provenance**: ``algorithm_type`` (``AUTOMATIC``, ``SEMIAUTOMATIC`` or ``MANUAL``) and
  ``algorithm_name``, set by whoever produces the labels: automatic segmentation marks its
  classes ``AUTOMATIC`` with the model's name; interactive (prompted) segmentation marks
  its objects ``SEMIAUTOMATIC`` with the prompt model's name; editing a label by hand
  (:meth:`LabelTable.marked_edited`) turns ``AUTOMATIC`` into ``SEMIAUTOMATIC`` (model +
  person) and a label without provenance into ``MANUAL``. A label without provenance is
  written as ``MANUAL``.
- **code**: the structure's coded concept (:class:`SegmentCode`: property category, type
  and optional modifier / anatomic region), e.g. TotalSegmentator's SNOMED CT codes
  (:func:`napari_medseg.models.totalseg_classes.anatomical_code`). Renaming a label drops
  its code (the code named the old structure); a label without a code is written with
  the generic :data:`GENERIC_CODE` ("Tissue").
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

from ..errors import InvalidInputError
from .formats import WRITABLE_LABELS, extension_of

RGBA = tuple  # (r, g, b, a), floats in [0, 1]

#: Colour of label ids that are not in the table (e.g. freshly painted ones): visible grey.
UNLISTED_COLOR: RGBA = (0.7, 0.7, 0.7, 1.0)
#: Background (id 0) is always transparent.
TRANSPARENT: RGBA = (0.0, 0.0, 0.0, 0.0)

SIDECAR_FORMAT = "napari-medseg-labels"
SIDECAR_VERSION = 1

_GOLDEN = 0.618033988749895

#: DICOM Segment Algorithm Type values (PS3.3 C.8.20.2.3), in the order of how much a
#: person took part.
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")


@dataclass(frozen=True)
class Code:
    """One coded concept: ``(scheme, value, meaning)``, e.g. ``Code("SCT", "10200004", "Liver")``."""

    scheme: str
    value: str
    meaning: str

    def to_list(self) -> list:
        return [self.scheme, self.value, self.meaning]

    @classmethod
    def from_any(cls, data: Any) -> "Code":
        """From ``[scheme, value, meaning]``, a ``{"scheme", "value", "meaning"}`` dict or a Code."""
        if isinstance(data, Code):
            return data
        if isinstance(data, Mapping):
            data = [data.get("scheme"), data.get("value"), data.get("meaning")]
        try:
            scheme, value, meaning = (str(v).strip() for v in data)
        except (TypeError, ValueError):
            raise InvalidInputError(f"a code must be [scheme, value, meaning], got {data!r}") from None
        if not (scheme and value and meaning):
            raise InvalidInputError(f"a code needs a scheme, a value and a meaning, got {data!r}")
        return cls(scheme, value, meaning)


@dataclass(frozen=True)
class SegmentCode:
    """What a segment is, as DICOM-SEG codes it.

    Attributes
    ----------
    category, type : Code
        Segmented property category (e.g. SCT 123037004 "Anatomical Structure") and
        type (e.g. SCT 10200004 "Liver").
    modifier : Code, optional
        Segmented property type modifier (e.g. SCT 7771000 "Left").
    region : Code, optional
        Anatomic region (e.g. the kidney of a kidney cyst).
    region_modifier : Code, optional
        Modifier of the anatomic region (e.g. "Left").
    """

    category: Code
    type: Code
    modifier: Optional[Code] = None
    region: Optional[Code] = None
    region_modifier: Optional[Code] = None

    _FIELDS = ("category", "type", "modifier", "region", "region_modifier")

    def to_dict(self) -> dict:
        return {f: getattr(self, f).to_list() for f in self._FIELDS if getattr(self, f) is not None}

    @classmethod
    def from_dict(cls, data: Any) -> "SegmentCode":
        if isinstance(data, SegmentCode):
            return data
        if not isinstance(data, Mapping) or "category" not in data or "type" not in data:
            raise InvalidInputError(f"a segment code needs 'category' and 'type', got {data!r}")
        return cls(**{f: Code.from_any(data[f]) for f in cls._FIELDS if data.get(f)})


#: The code of a segment whose structure is not known: category and type SCT 85756007 "Tissue".
GENERIC_CODE = SegmentCode(Code("SCT", "85756007", "Tissue"), Code("SCT", "85756007", "Tissue"))


@dataclass(frozen=True)
class SegmentInfo:
    """Provenance and coded meaning of one label (all optional; see the module docstring)."""

    algorithm_type: Optional[str] = None
    algorithm_name: Optional[str] = None
    code: Optional[SegmentCode] = None

    def __post_init__(self) -> None:
        if self.algorithm_type is not None:
            kind = str(self.algorithm_type).upper()
            if kind not in ALGORITHM_TYPES:
                raise InvalidInputError(
                    f"algorithm type must be one of {', '.join(ALGORITHM_TYPES)}, got {self.algorithm_type!r}")
            object.__setattr__(self, "algorithm_type", kind)
        if self.algorithm_name is not None:
            object.__setattr__(self, "algorithm_name", str(self.algorithm_name) or None)

    def is_empty(self) -> bool:
        return self.algorithm_type is None and self.algorithm_name is None and self.code is None

    def to_dict(self) -> dict:
        out: dict = {}
        if self.algorithm_type is not None:
            out["algorithm_type"] = self.algorithm_type
        if self.algorithm_name is not None:
            out["algorithm_name"] = self.algorithm_name
        if self.code is not None:
            out["code"] = self.code.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "SegmentInfo":
        code = data.get("code")
        return cls(algorithm_type=data.get("algorithm_type") or None,
                   algorithm_name=data.get("algorithm_name") or None,
                   code=SegmentCode.from_dict(code) if code else None)


_NO_INFO = SegmentInfo()


def default_color(label_id: int) -> RGBA:
    """Deterministic, well-separated default colour of a label id.

    Hues follow the golden-ratio sequence (neighbouring ids get very different hues);
    saturation and value alternate so that ids whose hues come close again still differ.
    """
    label_id = int(label_id)
    hue = (label_id * _GOLDEN) % 1.0
    sat = (0.85, 0.6, 0.95)[label_id % 3]
    val = (0.95, 0.8)[(label_id // 3) % 2]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (round(r, 4), round(g, 4), round(b, 4), 1.0)


def _as_rgba(color: Any, label_id: int) -> RGBA:
    if color is None:
        return default_color(label_id)
    if isinstance(color, str):
        text = color.strip().lstrip("#")
        if len(text) in (6, 8):
            try:
                vals = [int(text[i:i + 2], 16) / 255.0 for i in range(0, len(text), 2)]
            except ValueError:
                vals = []
            if vals:
                color = vals
        if isinstance(color, str):
            raise InvalidInputError(f"colour of label {label_id} must be r,g,b[,a] or #rrggbb, got {color!r}")
    try:
        vals = [float(c) for c in color]
    except (TypeError, ValueError):
        raise InvalidInputError(f"colour of label {label_id} must be 3 or 4 numbers, got {color!r}") from None
    if len(vals) == 3:
        vals.append(1.0)
    if len(vals) != 4:
        raise InvalidInputError(f"colour of label {label_id} must be 3 or 4 numbers, got {color!r}")
    if any(v > 1.0 for v in vals[:3]) and all(0 <= v <= 255 for v in vals[:3]):
        # 0..255 integer colours (as in many colour tables): scale the rgb part.
        vals = [v / 255.0 for v in vals[:3]] + [vals[3] if vals[3] <= 1.0 else vals[3] / 255.0]
    if not all(0.0 <= v <= 1.0 for v in vals):
        raise InvalidInputError(f"colour of label {label_id} must lie in [0, 1], got {color!r}")
    return tuple(vals)


def _as_id(value: Any) -> int:
    try:
        as_float = float(value)
        label_id = int(as_float)
    except (TypeError, ValueError):
        raise InvalidInputError(f"label ids must be integers, got {value!r}") from None
    if label_id != as_float:
        raise InvalidInputError(f"label ids must be integers, got {value!r}")
    if label_id < 0:
        raise InvalidInputError(f"label ids must be >= 0, got {label_id}")
    return label_id


class LabelTable:
    """Ordered ``id -> (name, rgba colour)`` for the non-zero ids of a label map.

    Parameters
    ----------
    entries : mapping or iterable, optional
        ``{id: (name, color)}`` or ``{id: name}`` or pairs of those. Id 0
        (background) is dropped; colours may be ``None`` for the default.

    Examples
    --------
    >>> table = LabelTable.from_names({1: "liver", 2: "liver_lesion"})
    >>> table.name_of(2)
    'liver_lesion'
    """

    __slots__ = ("_entries", "_info")

    def __init__(self, entries: Union[Mapping, Iterable, None] = None,
                 info: Optional[Mapping[int, SegmentInfo]] = None) -> None:
        self._entries: dict[int, tuple[str, RGBA]] = {}
        items = entries.items() if isinstance(entries, Mapping) else (entries or ())
        for key, value in items:
            label_id = _as_id(key)
            if isinstance(value, (tuple, list)) and len(value) == 2 and not isinstance(value[0], (int, float)):
                name, color = value
            else:
                name, color = value, None
            if label_id == 0:
                continue  # background is implicit
            self._entries[label_id] = (str(name), _as_rgba(color, label_id))
        self._info: dict[int, SegmentInfo] = {}
        for key, value in (info or {}).items():
            label_id = _as_id(key)
            if label_id in self._entries and value is not None and not value.is_empty():
                self._info[label_id] = value

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_names(cls, names: Mapping[Any, str], colors: Optional[Mapping[Any, Any]] = None) -> "LabelTable":
        """Table from ``{id: name}`` (id 0 / "background" is ignored), default colours."""
        colors = {_as_id(k): v for k, v in (colors or {}).items()}
        entries = {}
        for key, name in names.items():
            label_id = _as_id(key)
            entries[label_id] = (str(name), colors.get(label_id))
        return cls(dict(sorted(entries.items())))

    @classmethod
    def from_ids(cls, ids: Iterable[int]) -> "LabelTable":
        """Table naming each non-zero id ``"label <id>"`` (for files without names)."""
        return cls.from_names({int(i): f"label {int(i)}" for i in sorted(set(int(i) for i in ids)) if int(i) != 0})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelTable":
        """Inverse of :meth:`to_dict` (also accepts a plain ``{id: name}`` mapping)."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a label table must be a JSON object, got {type(data).__name__}")
        if "labels" not in data:
            return cls.from_names(data)
        labels = data["labels"]
        if not isinstance(labels, list):
            raise InvalidInputError("'labels' in a label table must be a list of {id, name, color}")
        entries, info = {}, {}
        for item in labels:
            if not isinstance(item, Mapping) or "id" not in item:
                raise InvalidInputError(f"label table entry without an 'id': {item!r}")
            label_id = _as_id(item["id"])
            entries[label_id] = (str(item.get("name", f"label {label_id}")), item.get("color"))
            try:
                info[label_id] = SegmentInfo.from_dict(item)
            except InvalidInputError as exc:
                raise InvalidInputError(f"label {label_id}: {exc}") from None
        return cls(entries, info)

    @classmethod
    def from_features(cls, features: Any, colormap: Any = None) -> Optional["LabelTable"]:
        """Table from a napari Labels layer's ``features`` (``index`` + ``name`` columns).

        Returns ``None`` when the features carry no names.
        """
        if features is None:
            return None
        try:
            index = list(features["index"])
            names = list(features["name"])
        except (KeyError, TypeError, IndexError):
            return None
        if not index:
            return None
        colors = {}
        color_dict = getattr(colormap, "color_dict", None)
        if isinstance(color_dict, Mapping):
            for key, value in color_dict.items():
                if key is not None:
                    try:
                        colors[int(key)] = tuple(float(c) for c in value)
                    except (TypeError, ValueError):
                        pass
        try:
            return cls.from_names({int(i): str(n) for i, n in zip(index, names)}, colors)
        except InvalidInputError:
            return None

    # ----------------------------------------------------------------- queries
    @property
    def names(self) -> dict:
        """``{id: name}`` for every listed id, in table order."""
        return {k: v[0] for k, v in self._entries.items()}

    @property
    def ids(self) -> list:
        """Listed ids in table order."""
        return list(self._entries)

    def name_of(self, label_id: int) -> str:
        """Name of ``label_id`` (``"background"`` for 0, ``"label <id>"`` when unlisted)."""
        label_id = int(label_id)
        if label_id == 0:
            return "background"
        entry = self._entries.get(label_id)
        return entry[0] if entry else f"label {label_id}"

    def id_of(self, name: str) -> int:
        """Id of the label called ``name`` (exact match, then case-insensitive)."""
        for label_id, (n, _) in self._entries.items():
            if n == name:
                return label_id
        lowered = name.lower()
        for label_id, (n, _) in self._entries.items():
            if n.lower() == lowered:
                return label_id
        raise KeyError(f"no label called {name!r}; known: {', '.join(self.names.values()) or 'none'}")

    def color_of(self, label_id: int) -> RGBA:
        """RGBA colour of ``label_id`` (transparent for 0, default colour when unlisted)."""
        label_id = int(label_id)
        if label_id == 0:
            return TRANSPARENT
        entry = self._entries.get(label_id)
        return entry[1] if entry else default_color(label_id)

    def info_of(self, label_id: int) -> SegmentInfo:
        """Provenance and code of ``label_id`` (an empty :class:`SegmentInfo` when unknown)."""
        return self._info.get(int(label_id), _NO_INFO)

    def code_of(self, label_id: int) -> SegmentCode:
        """The coded meaning of ``label_id``: its own code, else :data:`GENERIC_CODE`."""
        return self.info_of(label_id).code or GENERIC_CODE

    def algorithm_of(self, label_id: int) -> tuple:
        """``(algorithm_type, algorithm_name)`` of ``label_id``; ``("MANUAL", None)`` when unknown."""
        info = self.info_of(label_id)
        return (info.algorithm_type or "MANUAL", info.algorithm_name)

    def color_dict(self) -> dict:
        """Colour dict for ``napari.utils.colormaps.DirectLabelColormap`` / ``colormap=``.

        Keys: ``None`` (ids not in the table: visible grey), ``0`` (transparent) and
        every listed id.
        """
        out: dict = {None: UNLISTED_COLOR, 0: TRANSPARENT}
        for label_id, (_, color) in self._entries.items():
            out[label_id] = tuple(color)
        return out

    def features(self) -> dict:
        """napari ``features`` for a Labels layer: ``index`` and ``name`` columns.

        Row 0 is background, then the listed ids in table order.
        """
        return {
            "index": [0] + self.ids,
            "name": ["background"] + [n for n, _ in self._entries.values()],
        }

    def to_dict(self) -> dict:
        """JSON-ready ``{"labels": [{"id", "name", "color": [r, g, b, a]}, ...]}``."""
        return {
            "labels": [
                {"id": label_id, "name": name, "color": [float(c) for c in color],
                 **self.info_of(label_id).to_dict()}
                for label_id, (name, color) in self._entries.items()
            ]
        }

    # ------------------------------------------------------------ derivations
    def with_label(self, label_id: int, name: str, color: Any = None) -> "LabelTable":
        """A copy with ``label_id`` set to ``name`` (and ``color``; default keeps/derives one)."""
        label_id = _as_id(label_id)
        if label_id == 0:
            raise InvalidInputError("label id 0 is background and cannot be named")
        entries = dict(self._entries)
        info = dict(self._info)
        if color is None:
            color = entries[label_id][1] if label_id in entries else default_color(label_id)
        if label_id in entries and entries[label_id][0] != str(name) and label_id in info:
            # the code named the old structure; the provenance still holds
            info[label_id] = replace(info[label_id], code=None)
        entries[label_id] = (str(name), _as_rgba(color, label_id))
        return LabelTable(entries, info)

    def with_info(self, label_id: int, info: Optional[SegmentInfo]) -> "LabelTable":
        """A copy with ``label_id``'s provenance and code set to ``info`` (``None`` clears them)."""
        label_id = _as_id(label_id)
        if label_id not in self._entries:
            raise KeyError(f"label {label_id} is not in the table")
        new = dict(self._info)
        new[label_id] = info or _NO_INFO
        return LabelTable(self._entries, new)

    def with_provenance(self, algorithm_type: str, algorithm_name: Optional[str] = None,
                        ids: Optional[Iterable[int]] = None) -> "LabelTable":
        """A copy with ``ids`` (default: every listed id) marked as produced by an algorithm.

        Parameters
        ----------
        algorithm_type : {"AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"}
            How the labels were made (DICOM Segment Algorithm Type).
        algorithm_name : str, optional
            The model or method (e.g. ``"total"``, ``"hu-tissue"``, ``"nnInteractive"``).
        ids : iterable of int, optional
            The labels to mark; unlisted ids are ignored.
        """
        targets = self.ids if ids is None else [int(i) for i in ids if int(i) in self._entries]
        new = dict(self._info)
        for i in targets:
            new[i] = replace(new.get(i, _NO_INFO), algorithm_type=algorithm_type,
                             algorithm_name=algorithm_name)
        return LabelTable(self._entries, new)

    def with_codes(self, codes: Mapping[int, Optional[SegmentCode]]) -> "LabelTable":
        """A copy with ``{id: SegmentCode}`` set (``None`` values and unlisted ids skipped)."""
        new = dict(self._info)
        for key, code in codes.items():
            i = _as_id(key)
            if code is not None and i in self._entries:
                new[i] = replace(new.get(i, _NO_INFO), code=SegmentCode.from_dict(code))
        return LabelTable(self._entries, new)

    def marked_edited(self, ids: Iterable[int]) -> "LabelTable":
        """A copy recording that a person edited ``ids`` by hand.

        ``AUTOMATIC`` becomes ``SEMIAUTOMATIC`` (the algorithm's name is kept: model output
        corrected by a person); a label without provenance becomes ``MANUAL``;
        ``SEMIAUTOMATIC`` and ``MANUAL`` stay as they are.
        """
        new = dict(self._info)
        for i in {int(i) for i in ids}:
            if i not in self._entries:
                continue
            info = new.get(i, _NO_INFO)
            if info.algorithm_type == "AUTOMATIC":
                new[i] = replace(info, algorithm_type="SEMIAUTOMATIC")
            elif info.algorithm_type is None:
                new[i] = replace(info, algorithm_type="MANUAL", algorithm_name=None)
        return LabelTable(self._entries, new)

    def without(self, label_id: int) -> "LabelTable":
        """A copy without ``label_id`` (no error when absent)."""
        entries = dict(self._entries)
        entries.pop(int(label_id), None)
        return LabelTable(entries, self._info)

    def merged(self, other: "LabelTable") -> "LabelTable":
        """A copy with ``other``'s entries added (``other`` wins on conflicts).

        Provenance and codes: ``other``'s where it has them, else this table's (a table
        rebuilt from a layer's ``features`` has names only and must not erase them);
        a label that ``other`` renames loses its code.
        """
        entries = dict(self._entries)
        info = dict(self._info)
        for i, (name, _) in other._entries.items():
            if i in other._info:
                info[i] = other._info[i]
            elif i in info and i in entries and entries[i][0] != name:
                info[i] = replace(info[i], code=None)
        entries.update(other._entries)
        return LabelTable(entries, info)

    def restricted_to(self, ids: Iterable[int]) -> "LabelTable":
        """A copy keeping only ``ids`` (table order kept)."""
        keep = {int(i) for i in ids}
        return LabelTable({k: v for k, v in self._entries.items() if k in keep}, self._info)

    # --------------------------------------------------------------- dunders
    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __contains__(self, label_id: object) -> bool:
        try:
            return int(label_id) in self._entries  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __getitem__(self, label_id: int) -> tuple:
        return self._entries[int(label_id)]

    def __eq__(self, other: object) -> bool:
        """Same ids, names and colours in the same order (provenance and codes: :meth:`info_of`)."""
        if not isinstance(other, LabelTable):
            return NotImplemented
        return list(self._entries.items()) == list(other._entries.items())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v[0]!r}" for k, v in list(self._entries.items())[:8])
        more = ", ..." if len(self._entries) > 8 else ""
        return f"LabelTable({{{inner}{more}}})"


# ---------------------------------------------------------------- sidecars
def sidecar_path(path: Union[str, Path]) -> Path:
    """The JSON sidecar of a label file: ``labels.nii.gz`` -> ``labels.json``.

    Known image extensions (``.seg.nrrd``, ``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``,
    ``.mha``, ``.mhd``) are stripped; any other suffix is replaced.
    """
    path = Path(path)
    name = path.name
    suffix = extension_of(name, WRITABLE_LABELS)  # longest first: ".seg.nrrd" wins over ".nrrd"
    if suffix is not None:
        return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json") if path.suffix else path.with_name(name + ".json")


def sidecar_dict(table: LabelTable, geometry: Optional[dict] = None) -> dict:
    """The JSON document written beside a label file."""
    doc: dict = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION}
    doc.update(table.to_dict())
    if geometry is not None:
        doc["geometry"] = geometry
    return doc


def read_sidecar(path: Union[str, Path]) -> Optional[tuple]:
    """Read a sidecar JSON; returns ``(LabelTable, geometry or None)`` or ``None``.

    ``None`` means "no sidecar of ours here" (absent, or a JSON file of another kind);
    a file that claims to be ours but is broken raises :class:`InvalidInputError`
    naming the file.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"label sidecar {path} is not valid JSON ({exc}); fix or delete it") from None
    if not isinstance(doc, dict) or "labels" not in doc:
        return None
    try:
        table = LabelTable.from_dict(doc)
    except InvalidInputError as exc:
        raise InvalidInputError(f"label sidecar {path}: {exc}") from None
    geometry = doc.get("geometry") if isinstance(doc.get("geometry"), dict) else None
    return table, geometry


def table_from_pairs(pairs: Sequence[tuple]) -> LabelTable:
    """Table from ``[(id, name, rgba_or_None), ...]`` (used by the format parsers)."""
    return LabelTable({int(i): (str(n), c) for i, n, c in pairs})
