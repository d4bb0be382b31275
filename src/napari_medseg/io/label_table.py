"""Label tables: which integer id means which structure, and in which colour.

A :class:`LabelTable` is an ordered mapping ``id -> (name, rgba)`` for the non-zero
label ids of a label map (0 is always background and never stored). It converts to
what napari needs (a colour dict for ``DirectLabelColormap`` and a ``features`` table
with an ``index`` column) and to/from the JSON sidecar this project writes next to
every label file::

    {"format": "napari-medseg-labels", "version": 1,
     "labels": [{"id": 1, "name": "liver", "color": [r, g, b, a]}, ...],
     "geometry": {"shape_zyx": ..., "spacing_xyz": ..., ...}}

Colours are floats in [0, 1]. Ids without an explicit colour get a deterministic
default (:func:`default_color`), so the same id always looks the same.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

from ..errors import InvalidInputError

RGBA = tuple  # (r, g, b, a), floats in [0, 1]

#: Colour of label ids that are not in the table (e.g. freshly painted ones): visible grey.
UNLISTED_COLOR: RGBA = (0.7, 0.7, 0.7, 1.0)
#: Background (id 0) is always transparent.
TRANSPARENT: RGBA = (0.0, 0.0, 0.0, 0.0)

SIDECAR_FORMAT = "napari-medseg-labels"
SIDECAR_VERSION = 1

# Extensions stripped by sidecar_path, longest first so ".seg.nrrd" wins over ".nrrd".
_IMAGE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

_GOLDEN = 0.618033988749895


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

    __slots__ = ("_entries",)

    def __init__(self, entries: Union[Mapping, Iterable, None] = None) -> None:
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
        entries = {}
        for item in labels:
            if not isinstance(item, Mapping) or "id" not in item:
                raise InvalidInputError(f"label table entry without an 'id': {item!r}")
            label_id = _as_id(item["id"])
            entries[label_id] = (str(item.get("name", f"label {label_id}")), item.get("color"))
        return cls(entries)

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
                {"id": label_id, "name": name, "color": [float(c) for c in color]}
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
        if color is None:
            color = entries[label_id][1] if label_id in entries else default_color(label_id)
        entries[label_id] = (str(name), _as_rgba(color, label_id))
        return LabelTable(entries)

    def without(self, label_id: int) -> "LabelTable":
        """A copy without ``label_id`` (no error when absent)."""
        entries = dict(self._entries)
        entries.pop(int(label_id), None)
        return LabelTable(entries)

    def merged(self, other: "LabelTable") -> "LabelTable":
        """A copy with ``other``'s entries added (``other`` wins on conflicts)."""
        entries = dict(self._entries)
        entries.update(other._entries)
        return LabelTable(entries)

    def restricted_to(self, ids: Iterable[int]) -> "LabelTable":
        """A copy keeping only ``ids`` (table order kept)."""
        keep = {int(i) for i in ids}
        return LabelTable({k: v for k, v in self._entries.items() if k in keep})

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
    lowered = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
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
