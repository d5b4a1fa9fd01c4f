"""Write CIFAR-10-C in RobustBench's layout from the CIFAR-10 test JPEGs (``tools/make_cifar10c.py``).

The layout is that of the published CIFAR-10-C (Hendrycks & Dietterich, zenodo 2535967) which RobustBench
reads, so a downloaded copy drops in unchanged: ``<out>/<corruption>.npy`` of shape (5 N, 32, 32, 3) uint8
with rows ``N (s - 1) .. N s - 1`` at severity ``s``, and ``<out>/labels.npy`` (5 N,) uint8, the N labels
repeated per severity. N is the source's image count (10,000), in its manifest's order (sorted by class, unlike
the original ``test_batch``), so ``labels.npy`` is not the downloaded one: mixing the two is refused.

Each image draws from its own generator, derived from (seed, corruption, severity, image index): a corruption's
arrays do not depend on ``workers``, on the other corruptions written, or on a previous interrupted run.
Files are written to ``<name>.npy.tmp`` and renamed, so an interrupted run leaves no partial ``.npy``;
``<out>/manifest.json`` records the seed, source, generator version, library versions and sha256 per file.
"""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import time
import zlib
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import PIL
import scipy
import skimage
from PIL import Image
from tqdm import tqdm

from .cifar10c import GENERATOR_VERSION, SEVERITIES, SIZE, corrupt

CHUNK = 250
"""Images per task handed to a worker."""

_worker_images: np.ndarray | None = None


def read_cifar10_test(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (N, 32, 32, 3) uint8 RGB and labels (N,) uint8 of ``root/manifest.csv``, in its order.

    The manifest starts with ``#`` comment lines, then the header ``path,label,class,sha256,bytes``; paths are
    relative to ``root``.
    """
    manifest = Path(root) / 'manifest.csv'
    if not manifest.exists():
        raise FileNotFoundError(f'{manifest} not found: the CIFAR-10 folder lists its images there (see its '
                                'README.md)')
    with open(manifest, newline='') as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith('#')))
    if not rows or not {'path', 'label'} <= set(rows[0]):
        raise ValueError(f'{manifest} has no rows with the columns path and label')
    images = np.stack([np.asarray(Image.open(Path(root) / row['path']).convert('RGB')) for row in rows])
    if images.shape[1:] != (SIZE, SIZE, 3):
        raise ValueError(f'{root} holds {images.shape[1]}x{images.shape[2]} images, not CIFAR-10\'s {SIZE}x{SIZE}')
    return images, np.array([int(row['label']) for row in rows], dtype=np.uint8)


def image_rng(seed: int, name: str, severity: int, index: int) -> np.random.Generator:
    """The generator for image ``index`` of corruption ``name`` at ``severity``: a function of the four alone."""
    key = (zlib.crc32(name.encode('ascii')), severity, index)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def corrupt_images(images: np.ndarray, name: str, severity: int, seed: int, start: int = 0) -> np.ndarray:
    """``images`` (their indices counted from ``start``) corrupted by ``name`` at ``severity``."""
    return np.stack([corrupt(image, name, severity, image_rng(seed, name, severity, start + offset))
                     for offset, image in enumerate(images)])


def library_versions() -> dict[str, str]:
    """The versions of the libraries whose code makes the pixels (interpolation, JPEG codec, filters)."""
    return {'numpy': np.__version__, 'scipy': scipy.__version__, 'scikit-image': skimage.__version__,
            'opencv': cv2.__version__, 'pillow': PIL.__version__,
            'imagecorruptions-imaug': version('imagecorruptions-imaug')}


def _init_worker(images: np.ndarray | None) -> None:
    global _worker_images
    _worker_images = images


def _corrupt_chunk(task: tuple[str, int, int, int, int]) -> tuple[int, int, np.ndarray]:
    name, severity, seed, start, stop = task
    return severity, start, corrupt_images(_worker_images[start:stop], name, severity, seed, start)


@contextmanager
def _chunk_runner(images: np.ndarray, workers: int) -> Iterator[Callable]:
    """A function mapping chunk tasks to (severity, start, block), in a pool of ``workers`` processes if > 1.

    Workers are forked where the platform allows it: they inherit the images and the imported modules (a spawned
    worker would spend seconds importing ``imse_seg``'s OpenMMLab stack).
    """
    if workers <= 1:
        _init_worker(images)
        try:
            yield lambda tasks: map(_corrupt_chunk, tasks)
        finally:
            _init_worker(None)
        return
    method = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn'
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (images,)) as pool:
        yield lambda tasks: pool.imap_unordered(_corrupt_chunk, tasks)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``<path>.tmp``, then rename over ``path``: readers never see a partial file."""
    temporary = path.with_name(path.name + '.tmp')
    try:
        with open(temporary, 'wb') as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_json_atomic(path: Path, content: dict) -> None:
    temporary = path.with_name(path.name + '.tmp')
    temporary.write_text(json.dumps(content, indent=2) + '\n')
    os.replace(temporary, path)


def _is_complete(path: Path, shape: tuple[int, ...], entry: dict | None, seed: int) -> bool:
    """Whether ``path`` holds a uint8 array of ``shape`` that this request need not rewrite: one without a
    manifest entry (e.g. a downloaded CIFAR-10-C file), or one made here with the same seed and generator."""
    try:
        existing = np.load(path, mmap_mode='r')
    except (OSError, ValueError):
        return False
    if existing.shape != shape or existing.dtype != np.uint8:
        return False
    return entry is None or (entry.get('seed') == seed and entry.get('generator_version') == GENERATOR_VERSION)


def write_cifar10c(source: Path, out: Path, corruptions: Sequence[str], seed: int = 0, workers: int = 1,
                   force: bool = False, progress: bool = True,
                   log: Callable[[str], None] = tqdm.write) -> dict[str, float | None]:
    """Write ``corruptions`` of the CIFAR-10 test set at ``source`` into ``out`` (see the module docstring).

    A corruption whose file is already complete is skipped unless ``force``. Returns the seconds each
    corruption took, ``None`` for a skipped one; ``log`` hears one line per corruption.
    """
    source, out = Path(source), Path(out)
    images, labels = read_cifar10_test(source)
    count = len(images)
    out.mkdir(parents=True, exist_ok=True)
    repeated = np.tile(labels, len(SEVERITIES))
    labels_path = out / 'labels.npy'
    if labels_path.exists() and not force and not np.array_equal(np.load(labels_path), repeated):
        raise FileExistsError(f'{labels_path} holds other labels than {source} in its manifest order (a '
                              'downloaded CIFAR-10-C?): write to another --out, or pass --force to replace them')
    _save_atomic(labels_path, repeated)
    manifest_path = out / 'manifest.json'
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({
        'layout': 'RobustBench CIFAR-10-C: <corruption>.npy (5 N, 32, 32, 3) uint8, severity s in rows '
                  'N (s - 1) .. N s - 1; labels.npy (5 N,) uint8',
        'source': {'path': str(source.resolve()), 'images': count,
                   'manifest_sha256': _sha256(source / 'manifest.csv')},
        'generator': {'module': 'imse_seg.cls.cifar10c', 'version': GENERATOR_VERSION,
                      'parameters': 'make_cifar_c.py of github.com/hendrycks/robustness (ImageNet-C/create_c/)'},
        'labels_sha256': _sha256(labels_path)})
    entries = manifest.setdefault('corruptions', {})
    shape = (len(SEVERITIES) * count, SIZE, SIZE, 3)
    seconds: dict[str, float | None] = {}
    with _chunk_runner(images, workers) as run:
        for name in corruptions:
            path = out / f'{name}.npy'
            if not force and _is_complete(path, shape, entries.get(name), seed):
                log(f'{name}: already complete in {path}, skipped (--force rewrites it)')
                seconds[name] = None
                continue
            started = time.perf_counter()
            array = np.empty(shape, dtype=np.uint8)
            tasks = [(name, severity, seed, start, min(start + CHUNK, count))
                     for severity in SEVERITIES for start in range(0, count, CHUNK)]
            with tqdm(total=shape[0], desc=name, unit='img', disable=not progress, mininterval=2) as bar:
                for severity, start, block in run(tasks):
                    row = (severity - 1) * count + start
                    array[row:row + len(block)] = block
                    bar.update(len(block))
            _save_atomic(path, array)
            seconds[name] = time.perf_counter() - started
            entries[name] = {'seed': seed, 'generator_version': GENERATOR_VERSION, 'sha256': _sha256(path),
                             'seconds': round(seconds[name], 1), 'workers': workers,
                             'libraries': library_versions()}
            _write_json_atomic(manifest_path, manifest)
            log(f'{name}: {seconds[name]:.1f} s')
    _write_json_atomic(manifest_path, manifest)
    return seconds
