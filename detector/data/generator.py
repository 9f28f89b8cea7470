"""The bundled, procedural dataset generator: coloured geometric shapes on generated backgrounds.

Output layout (standard YOLO, usable directly by Ultralytics)::

    <out_dir>/                       default: <config.root>/<config.version>, e.g. data/v1
      data.yaml                      train/val/test relative to the folder, names {0: circle, ...}
      manifest.json                  version, seed, counts, class histogram, preset parameters, content hash
      images/{train,val,test}/img_00000.jpg
      labels/{train,val,test}/img_00000.txt   one `cls cx cy w h` line per object (normalized, 6 decimals)

A split of size 0 (only `test` may be 0) gets no folders and no key in data.yaml.

`data.yaml` deliberately has **no `path:` key**. Ultralytics' `check_det_dataset` then takes the dataset root to
be the folder holding data.yaml, so the dataset keeps working when it is moved, cloned or `dvc pull`-ed into
another checkout. (An absolute path would break after a move; `path: .` would be resolved against the current
working directory, not against data.yaml.) Training code should pass the data.yaml path itself; it must not
rewrite the file, or the content hash changes.

Determinism: every image is drawn from its own numpy Generator seeded with (seed, version, split, index), so
the same config gives byte-identical files (JPEG via `cv2.imencode`, quality 95, 4:4:4 chroma, for a given
OpenCV build) and changing one split's size never changes another split's images (nor the first images of the
same split).

Version presets (see `PRESETS`; DATASET_CARD.md cites this table):

======================  =============================  ==================================================
parameter               v1                             v2
======================  =============================  ==================================================
classes                 circle, square, triangle       v1's (same ids 0-2) + star, hexagon
objects per image       1-6                            2-10
object size             12-35 % of the image side      8-45 % of the image side
overlap                 none (>= 2 px apart)           occlusion allowed; every labelled object keeps
                                                       >= 60 % of its pixels visible
rotation                none                           any angle, aspect jitter 0.8-1.25
background              flat or soft 2-colour          gradient + low-frequency colour noise + pixel
                        gradient                       texture + 3-12 unlabelled distractors (lines,
                                                       arcs, elongated ellipses)
object colour           random hue, min RGB distance   random hue, min RGB distance 70 from the local
                        110 from the local background  background
photometric             none                           brightness/contrast jitter, blur (p=0.35),
                                                       gaussian noise (std 0-12)
======================  =============================  ==================================================

`small` (issue 26: small objects in big images, the case for tiled inference): v1's classes and look, but 10-40
objects of 8-24 px each (20-60 per scene) in 1280x1280 scenes, whatever `data.imgsz` says, and 5 % as many
images as the configured split sizes (a scene holds 25 times the pixels of a 256 px image: 20 training scenes cut
into 720 tiles of 256 px by default). Shrunk to a 256-640 px network
input whole, its objects fall to 2-12 px; `detector data tile` cuts it into the tiles a model is trained on
(`data/small-tiles`, dvc.yaml's `tiles` stage), and `detector predict --tile` / `tile=` detect it tile by tile.

Boxes are the tight box of the object's *visible* pixels (so an occluded object's box covers what can be
seen of it), computed from the rasterised mask rather than from the geometry.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np
from numpy.typing import NDArray

from detector.config import DataConfig
from detector.data.hashing import dataset_hash
from detector.data.yolo_format import SPLITS, write_data_yaml
from detector.errors import DatasetError
from detector.files import replace_dir, staging_dir

JPEG_QUALITY = 95
# Full-resolution chroma (4:4:4): the default 4:2:0 smears colour 1-2 px past a shape's edge, past its box.
_JPEG_PARAMS = [
    cv2.IMWRITE_JPEG_QUALITY,
    JPEG_QUALITY,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
]
_SHIFT = 4  # cv2 fixed-point bits: polygons are drawn with 1/16 px precision
_PLACEMENT_TRIES = 40

Image = NDArray[np.uint8]


@dataclass(frozen=True)
class Preset:
    """Parameters of one dataset version. Sizes are fractions of the image side."""

    version: str
    names: tuple[str, ...]
    objects_per_image: tuple[int, int]
    size_range: tuple[float, float]
    allow_occlusion: bool
    min_visible: float  # fraction of an object's own pixels that must stay visible (occlusion only)
    rotate: bool
    aspect_jitter: tuple[float, float]
    cluttered: bool
    distractors: tuple[int, int]
    min_contrast: float  # RGB distance between an object's colour and the background under it
    brightness_jitter: float  # max |beta| added to every pixel; contrast alpha in [1-j/100, 1+j/100]
    blur_prob: float
    noise_std: tuple[float, float]
    scene: int = 0  # image side in pixels; 0: `data.imgsz`
    share: float = 1.0  # images per split, as a share of the configured split sizes (rounded up)


_V1 = Preset(
    version="v1",
    names=("circle", "square", "triangle"),
    objects_per_image=(1, 6),
    size_range=(0.12, 0.35),
    allow_occlusion=False,
    min_visible=1.0,
    rotate=False,
    aspect_jitter=(1.0, 1.0),
    cluttered=False,
    distractors=(0, 0),
    min_contrast=110.0,
    brightness_jitter=0.0,
    blur_prob=0.0,
    noise_std=(0.0, 0.0),
)

PRESETS: dict[str, Preset] = {
    "v1": _V1,
    "v2": Preset(
        version="v2",
        names=("circle", "square", "triangle", "star", "hexagon"),
        objects_per_image=(2, 10),
        size_range=(0.08, 0.45),
        allow_occlusion=True,
        min_visible=0.6,
        rotate=True,
        aspect_jitter=(0.8, 1.25),
        cluttered=True,
        distractors=(3, 12),
        min_contrast=70.0,
        brightness_jitter=25.0,
        blur_prob=0.35,
        noise_std=(0.0, 12.0),
    ),
    # v1's classes and look, many more and much smaller objects, in big scenes
    "small": dataclasses.replace(
        _V1,
        version="small",
        objects_per_image=(20, 60),
        size_range=(8 / 1280, 24 / 1280),
        scene=1280,
        share=0.05,
    ),
}
VERSIONS: tuple[str, ...] = tuple(PRESETS)


@dataclass(frozen=True)
class DatasetSummary:
    """What `generate_dataset` wrote."""

    version: str
    root: Path
    names: dict[int, str]
    counts: dict[str, int]  # images per split
    objects: dict[str, dict[int, int]]  # split -> class id -> number of labelled objects
    sha256: str  # `dataset_hash(root)`


@dataclass(frozen=True)
class _Object:
    cls: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


def get_preset(version: str) -> Preset:
    try:
        return PRESETS[version]
    except KeyError:
        raise DatasetError(f"unknown dataset version {version!r}; the generator knows: {', '.join(VERSIONS)}") from None


def generate_dataset(config: DataConfig, out_dir: Path | None = None) -> DatasetSummary:
    """Generate the dataset `config` describes into `out_dir` (default `config.dataset_dir`), replacing it.

    The files are written into a temporary sibling folder that is renamed into place at the end, so an
    interrupted run never leaves a half-written dataset behind under the final name.
    """
    preset = get_preset(config.version)
    out = Path(out_dir) if out_dir is not None else config.dataset_dir
    sizes = {"train": config.splits.train, "val": config.splits.val, "test": config.splits.test}
    counts = {split: math.ceil(n * preset.share) for split, n in sizes.items()}
    names = dict(enumerate(preset.names))

    tmp = staging_dir(out)  # a hidden sibling: the final rename is atomic
    try:
        objects: dict[str, dict[int, int]] = {}
        for split, n in counts.items():
            if n > 0:
                objects[split] = _write_split(tmp, preset, config, split, n)
        write_data_yaml(tmp / "data.yaml", names, [s for s in SPLITS if counts[s] > 0])
        digest = dataset_hash(tmp)
        manifest = {
            "version": preset.version,
            "seed": config.seed,
            "imgsz": preset.scene or config.imgsz,
            "names": {str(k): v for k, v in names.items()},
            "counts": counts,
            "objects_per_class": {s: {str(k): v for k, v in h.items()} for s, h in objects.items()},
            "generator": dataclasses.asdict(preset),
            "jpeg_quality": JPEG_QUALITY,
            "opencv": cv2.__version__,
            "sha256": digest,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DatasetSummary(preset.version, out, names, counts, objects, digest)


def render_image(preset: Preset, imgsz: int, rng: np.random.Generator) -> tuple[Image, list[_Object]]:
    """Draw one scene; return the BGR image and its labelled objects."""
    img = _background(preset, imgsz, rng)
    # owner[y, x] = index of the object whose pixel this is (-1: background); used for occlusion bookkeeping.
    owner = np.full((imgsz, imgsz), -1, dtype=np.int16)
    areas: list[int] = []  # pixels of each placed object, and how many of them are still visible
    visible: list[int] = []
    placed: list[_Object] = []
    lo, hi = preset.objects_per_image
    for _ in range(int(rng.integers(lo, hi + 1))):
        for _try in range(_PLACEMENT_TRIES):
            candidate = _propose(preset, imgsz, rng)
            if candidate is None:
                continue
            cls, poly, box, mask = candidate
            x0, y0, x1, y1 = box
            under = owner[y0:y1, x0:x1][mask]
            lost = np.bincount(under[under >= 0], minlength=len(placed))
            if preset.allow_occlusion:
                # Every earlier object must keep >= min_visible of its own pixels under this one.
                if any(visible[i] - lost[i] < preset.min_visible * areas[i] for i in range(len(placed))):
                    continue
            elif any(_near(box, o.box, gap=2) for o in placed):
                continue
            colour = _pick_colour(preset, img[y0:y1, x0:x1], rng)
            cv2.fillPoly(img, [_fixed(poly)], colour, lineType=cv2.LINE_AA, shift=_SHIFT)
            owner[y0:y1, x0:x1][mask] = len(placed)
            visible = [v - int(n) for v, n in zip(visible, lost, strict=False)] + [int(mask.sum())]
            areas.append(int(mask.sum()))
            placed.append(_Object(cls, box))
            break
    img = _photometric(preset, img, rng)
    return img, [_visible_box(o, i, owner) for i, o in enumerate(placed)]


def _write_split(root: Path, preset: Preset, config: DataConfig, split: str, n: int) -> dict[int, int]:
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    hist = dict.fromkeys(range(len(preset.names)), 0)
    s = preset.scene or config.imgsz
    for i in range(n):
        img, objs = render_image(preset, s, _rng(config.seed, preset.version, split, i))
        ok, buf = cv2.imencode(".jpg", img, _JPEG_PARAMS)
        if not ok:  # pragma: no cover - only on a broken OpenCV build
            raise DatasetError("OpenCV failed to encode a JPEG")
        (img_dir / f"img_{i:05d}.jpg").write_bytes(buf.tobytes())
        lines = []
        for o in objs:
            x0, y0, x1, y1 = o.box
            cx, cy, w, h = (x0 + x1) / 2 / s, (y0 + y1) / 2 / s, (x1 - x0) / s, (y1 - y0) / s
            lines.append(f"{o.cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
            hist[o.cls] += 1
        (lbl_dir / f"img_{i:05d}.txt").write_text("".join(lines))
    return hist


def _rng(seed: int, version: str, split: str, index: int) -> np.random.Generator:
    # crc32 (not hash()) so the stream is stable across processes; seed % 2**64 accepts negative seeds.
    key = [seed % 2**64, zlib.crc32(version.encode()), SPLITS.index(split), index]
    return np.random.default_rng(np.random.SeedSequence(key))


# --- drawing -------------------------------------------------------------------------------------------------


def _random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> NDArray[np.float64]:
    r, g, b = colorsys.hsv_to_rgb(float(rng.random()), float(rng.uniform(*sat)), float(rng.uniform(*val)))
    return np.array([b, g, r]) * 255.0  # OpenCV is BGR


def _background(preset: Preset, s: int, rng: np.random.Generator) -> Image:
    c0 = _random_colour(rng, (0.0, 0.8), (0.15, 0.95))
    if rng.random() < 0.35 and not preset.cluttered:
        return np.broadcast_to(c0, (s, s, 3)).round().astype(np.uint8).copy()
    # Soft linear gradient at a random angle towards a nearby colour.
    c1 = np.clip(c0 + rng.uniform(-70, 70, 3), 0, 255)
    angle = rng.uniform(0, 2 * math.pi)
    # float32 throughout: float64 full-image arithmetic dominated the generation time.
    ramp = np.linspace(-0.5, 0.5, s, dtype=np.float32)
    t = np.clip(0.5 + ramp[None, :] * math.cos(angle) + ramp[:, None] * math.sin(angle), 0, 1)
    img = c0.astype(np.float32) + t[..., None] * (c1 - c0).astype(np.float32)
    if preset.cluttered:
        # Low-frequency colour blotches plus per-pixel texture.
        cells = int(rng.integers(3, 12))
        blotch = rng.normal(0, rng.uniform(15, 35), (cells, cells, 3)).astype(np.float32)
        img += cv2.resize(blotch, (s, s), interpolation=cv2.INTER_CUBIC)
        img += _gaussian_noise(rng, (s, s, 3), rng.uniform(4, 14))
    out = _to_uint8(img)
    if preset.cluttered:
        _distractors(preset, out, rng)
    return out


def _distractors(preset: Preset, img: Image, rng: np.random.Generator) -> None:
    """Unlabelled clutter, chosen not to look like any class (lines, arcs, elongated ellipses)."""
    s = img.shape[0]
    lo, hi = preset.distractors
    for _ in range(int(rng.integers(lo, hi + 1))):
        colour = tuple(float(c) for c in _random_colour(rng, (0.0, 1.0), (0.1, 1.0)))
        kind = rng.integers(3)
        p = (int(rng.integers(0, s)), int(rng.integers(0, s)))
        if kind == 0:
            q = (int(rng.integers(0, s)), int(rng.integers(0, s)))
            cv2.line(img, p, q, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            major = int(rng.uniform(0.05, 0.3) * s)
            minor = max(1, int(major / rng.uniform(3, 6)))
            axes = (major, minor) if kind == 2 else (major, major)
            start = float(rng.uniform(0, 360))
            sweep = 360.0 if kind == 2 else float(rng.uniform(60, 200))  # arcs are open, never a full circle
            thickness = -1 if kind == 2 else int(rng.integers(1, 4))
            cv2.ellipse(img, p, axes, float(rng.uniform(0, 180)), start, start + sweep, colour, thickness, cv2.LINE_AA)


def _shape(cls_name: str) -> NDArray[np.float64]:
    """Unit-size outline (fits in [-0.5, 0.5]^2, centred) of a class, as an (N, 2) float array."""
    if cls_name == "circle":
        a = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        return 0.5 * np.stack([np.cos(a), np.sin(a)], 1)
    if cls_name == "square":
        return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    if cls_name == "triangle":  # equilateral, pointing up
        h = math.sqrt(3) / 2
        return np.array([[0.0, -h / 2], [0.5, h / 2], [-0.5, h / 2]])
    if cls_name == "star":  # five points, inner radius 45 % of the outer one
        a = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 0.5, 0.225)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if cls_name == "hexagon":
        a = np.arange(6) * math.pi / 3
        return 0.5 * np.stack([np.cos(a), np.sin(a)], 1)
    raise ValueError(cls_name)


_SHAPES = {name: _shape(name) for name in ("circle", "square", "triangle", "star", "hexagon")}


def _propose(
    preset: Preset, s: int, rng: np.random.Generator
) -> tuple[int, NDArray[np.float64], tuple[int, int, int, int], NDArray[np.bool_]] | None:
    """A random object: class, polygon (pixels), box (x0, y0, x1, y1) and its mask within the box."""
    cls = int(rng.integers(len(preset.names)))
    size = rng.uniform(*preset.size_range) * s
    poly = _SHAPES[preset.names[cls]] * size
    if preset.rotate:
        poly = poly * np.array([rng.uniform(*preset.aspect_jitter), 1.0])
        a = rng.uniform(0, 2 * math.pi)
        poly = poly @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    lo, hi = poly.min(0), poly.max(0)
    if np.any(hi - lo > s - 4):
        return None
    poly = poly + rng.uniform(1 - lo, s - 1 - hi)  # centre chosen so the whole shape is inside the image
    x0, y0 = (max(int(v), 0) for v in np.floor(poly.min(0)))
    x1, y1 = (min(int(v) + 1, s) for v in np.ceil(poly.max(0)))
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [_fixed(poly - (x0, y0))], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    if not mask.any():
        return None
    return cls, poly, (x0, y0, x1, y1), mask.astype(bool)


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    """Whether two boxes overlap or are less than `gap` pixels apart."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


# Inverse normal CDF at 256 evenly spaced quantiles: indexing it with random bytes gives (quantised) gaussian
# noise ~10x faster than Generator.standard_normal, which dominated the v2 generation time.
_NORMAL_LUT = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], dtype=np.float32)


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> NDArray[np.float32]:
    lut: NDArray[np.float32] = _NORMAL_LUT * np.float32(std)
    return lut[rng.integers(0, 256, shape, dtype=np.uint8)]


def _to_uint8(img: NDArray[np.float32]) -> Image:
    img += 0.5  # round half up, then truncate
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _fixed(poly: NDArray[np.float64]) -> NDArray[np.int32]:
    return np.round(poly * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _pick_colour(preset: Preset, region: Image, rng: np.random.Generator) -> tuple[float, float, float]:
    """A random colour far enough from the background under the object (best of a few draws)."""
    bg = region.reshape(-1, 3).mean(0)
    best, best_d = None, -1.0
    for _ in range(12):
        c = _random_colour(rng, (0.3, 1.0), (0.2, 1.0))
        d = float(np.linalg.norm(c - bg))
        if d > best_d:
            best, best_d = c, d
        if d >= preset.min_contrast:
            break
    assert best is not None
    return (float(best[0]), float(best[1]), float(best[2]))


def _visible_box(o: _Object, index: int, owner: NDArray[np.int16]) -> _Object:
    x0, y0, x1, y1 = o.box
    ys, xs = np.nonzero(owner[y0:y1, x0:x1] == index)
    return _Object(o.cls, (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1))


def _photometric(preset: Preset, img: Image, rng: np.random.Generator) -> Image:
    if not preset.cluttered:
        return img
    out = img.astype(np.float32)
    if rng.random() < preset.blur_prob:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 1.3))), dtype=np.float32)
    j = preset.brightness_jitter
    out *= np.float32(rng.uniform(1 - j / 100, 1 + j / 100))
    out += np.float32(rng.uniform(-j, j))
    out += _gaussian_noise(rng, out.shape, rng.uniform(*preset.noise_std))
    return _to_uint8(out)
