"""Public cell-segmentation data sets: where they live, how to fetch them, standard splits.

The local data folder is given by the environment variable ``CKS_DATA_DIR`` (see
:func:`data_dir`); it holds one sub-folder per set (``usiigaci_nih3t3_phase/``,
``deepcell2016_covertlab/``, ...). Nothing here runs on import.

Checksums: the per-file sha256 lists in ``cks/data/manifests/`` were computed from the files
of the two sets we hold (Usiigaci, DeepCell 2016). LIVECell and A431 have no checksums here
because we never had their files.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cks.errors import CksDataError

__all__ = ["DatasetInfo", "DATASETS", "SPLITS", "LIVECELL_SCALES_V1", "data_dir", "fetch", "fetch_book_data",
           "download_file", "sha256_file", "read_manifest", "verify"]

ENV_VAR = "CKS_DATA_DIR"
_MANIFESTS = Path(__file__).with_name("manifests")


@dataclass(frozen=True)
class DatasetInfo:
    """One public data set.

    Attributes:
        name: folder name under ``CKS_DATA_DIR``.
        homepage: human-readable address of the set.
        base_url: address that ``files`` are relative to (``None``: no known direct download).
        files: ``(local path, remote path, sha256 or None)`` triples.
        recommended_scale: resize factor to bring cells near LIVECell size (use ``PATH@SCALE``).
        citation, license: free text.
    """

    name: str
    homepage: str
    base_url: str | None = None
    files: tuple = ()
    recommended_scale: float = 1.0
    citation: str = ""
    license: str = ""
    notes: str = ""


def read_manifest(name: str) -> dict[str, str]:
    """``{relative path: sha256}`` from ``cks/data/manifests/<name>.sha256`` (empty if none)."""
    path = _MANIFESTS / f"{name}.sha256"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.strip()] = digest
    return out


def _manifest_files(name: str, remote_prefix: str, renames: dict | None = None) -> tuple:
    renames = renames or {}
    return tuple((rel, renames.get(rel, remote_prefix + rel), digest) for rel, digest in read_manifest(name).items())


_USIIGACI_COMMIT = "9501d80c747cf82870dd596818fcf5c28c94d733"
_DEEPCELL_COMMIT = "b72ee72e972192ceba43b1997b4543dfeb24b568"
_LIVECELL_BASE = "https://livecell-dataset.s3.eu-central-1.amazonaws.com/LIVECell_dataset_2021/"

DATASETS: dict[str, DatasetInfo] = {
    "usiigaci_nih3t3_phase": DatasetInfo(
        name="usiigaci_nih3t3_phase",
        homepage="https://github.com/oist/Usiigaci",
        base_url=f"https://raw.githubusercontent.com/oist/Usiigaci/{_USIIGACI_COMMIT}/",
        files=_manifest_files("usiigaci_nih3t3_phase", "Mask R-CNN/", {"LICENSE_Usiigaci_MIT.txt": "LICENSE"}),
        recommended_scale=0.5,
        citation="Tsai et al., SoftwareX 9:230-237 (2019), doi:10.1016/j.softx.2019.02.007",
        license="MIT",
        notes="25 phase-contrast NIH/3T3 fields with instance label PNGs (train/set1-20, val/set46-50).",
    ),
    "deepcell2016_covertlab": DatasetInfo(
        name="deepcell2016_covertlab",
        homepage="https://github.com/CovertLab/DeepCell",
        base_url=f"https://raw.githubusercontent.com/CovertLab/DeepCell/{_DEEPCELL_COMMIT}/",
        files=_manifest_files("deepcell2016_covertlab", ""),
        citation="Van Valen et al., PLOS Comput Biol 12(11):e1005177 (2016), doi:10.1371/journal.pcbi.1005177",
        license="none stated; research use with citation",
        notes="Phase + nuclear stain + edge/interior maps; files over 4 MiB of the repository are not listed.",
    ),
    "livecell": DatasetInfo(
        name="livecell",
        homepage="https://sartorius-research.github.io/LIVECell/",
        base_url=_LIVECELL_BASE,
        files=(("images.zip", "images.zip", None),)
        + tuple((f"livecell_coco_{s}.json", f"annotations/LIVECell/livecell_coco_{s}.json", None)
                for s in ("train", "val", "test")),
        citation="Edlund et al., Nat Methods 18:1038-1045 (2021), doi:10.1038/s41592-021-01249-6",
        license="CC BY-NC 4.0",
        notes="COCO JSON; read with read_coco(cell_type_from='filename', scale_by_type=LIVECELL_SCALES_V1).",
    ),
    "a431": DatasetInfo(
        name="a431",
        homepage="https://data.mendeley.com/datasets/89s3ymz5wn (Mendeley Data, doi:10.17632/89s3ymz5wn)",
        base_url=None,
        citation="Yu, IEEE TMI (2023), doi:10.1109/TMI.2023.3312988",
        notes="No direct file address known here: download the zip from the Mendeley page, then "
              "fetch('a431', dest, url='file:///path/to/the.zip') or unpack it yourself.",
    ),
}

#: Named splits: selector strings (see :mod:`cks.data.spec`) relative to the set's folder.
SPLITS: dict[str, dict[str, str]] = {
    "usiigaci_nih3t3_phase": {"train": "train/set1-20", "val": "val/set46-50"},
    "deepcell2016_covertlab": {  # SOURCE.md proposal; RAW40X set1/set4 and set2/set5 share images
        "train": "training_data/HeLa_joint/set1-4,training_data/3T3/set1-2,training_data/BMDM,"
                 "training_data/RAW40X/set1,training_data/RAW40X/set3,training_data/RAW40X/set4",
        "val": "training_data/HeLa_joint/set5,training_data/RAW40X/set2,training_data/RAW40X/set5,"
               "training_data/3T3/set3,validation_data/3T3",
        "test": "training_data/MCF10A,validation_data/HeLa,validation_data/MCF10A",
    },
}

#: LIVECell per-line pre-scale factors used by the paper-era code (1 / cell_size_scale).
LIVECELL_SCALES_V1 = {"A172": 1.0, "BT474": 1 / 0.65, "BV2": 2.0, "Huh7": 1 / 1.3, "MCF7": 2.0,
                      "SHSY5Y": 1.0, "SKOV3": 1 / 1.3, "SkBr3": 1 / 0.75}


def data_dir(required: bool = True) -> Path | None:
    """The folder named by ``CKS_DATA_DIR``; ``None`` (or CksDataError if ``required``) when unset/missing."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        if required:
            raise CksDataError(f"{ENV_VAR} is not set; set it to the folder that holds the data sets "
                               f"(e.g. usiigaci_nih3t3_phase/)")
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        if required:
            raise CksDataError(f"{path}: {ENV_VAR} points to a folder that does not exist; fix the variable")
        return None
    return path


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary file in the same folder, renamed atomically.

    Raises:
        CksDataError: the download failed or the sha256 differs (nothing is left at ``dest``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
            except OSError as exc:  # URLError, HTTPError, timeouts are OSErrors
                raise CksDataError(f"{url}: download failed ({exc}); check the address and the network") from None
        if sha256 is not None and h.hexdigest() != sha256.lower():
            raise CksDataError(f"{url}: sha256 mismatch (got {h.hexdigest()[:12]}..., expected {sha256[:12]}...); "
                               f"the file changed upstream or is damaged, nothing was written to {dest}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + urllib.parse.quote(rel)


def fetch(name: str | DatasetInfo, dest=None, url: str | None = None, files: str | None = None) -> Path:
    """Download a data set's files into ``dest/<name>/``, verifying sha256 where known.

    Files already present with the right checksum are skipped.

    Args:
        name: a key of :data:`DATASETS` or a :class:`DatasetInfo`.
        dest: parent folder (default: :func:`data_dir`).
        url: replaces the set's ``base_url`` (a mirror; ``file://`` works). For a set without a
            file list (A431) it is the address of one file, saved under its own name.
        files: optional glob on local paths (e.g. ``"train/set1/*"``) to fetch a subset.
    Returns:
        the set's folder.
    """
    info = name if isinstance(name, DatasetInfo) else DATASETS.get(name)
    if info is None:
        raise CksDataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    root = Path(dest) if dest is not None else data_dir()
    target = root / info.name
    entries = list(info.files)
    if not entries:
        if url is None:
            raise CksDataError(f"{info.name}: no download address known; get it from {info.homepage} "
                               f"and pass url=... ({info.notes})")
        entries = [(Path(urllib.parse.urlparse(url).path).name, None, None)]
    base = url if url is not None else info.base_url
    if base is None:
        raise CksDataError(f"{info.name}: no download address known; see {info.homepage}")
    selected = [e for e in entries if files is None or fnmatch.fnmatch(e[0], files)]
    if not selected:
        raise CksDataError(f"{info.name}: no file matches {files!r}")
    for local, remote, digest in selected:
        path = target / local
        if path.is_file() and (digest is None or sha256_file(path) == digest):
            continue
        download_file(url if remote is None else _join(base, remote), path, digest)
    return target


#: The real data sets the book's chapters read.
BOOK_DATASETS = ("usiigaci_nih3t3_phase", "deepcell2016_covertlab")


def fetch_book_data(dest=None, names=BOOK_DATASETS) -> Path:
    """Download the sets the book reads into ``dest`` (default ``$CKS_DATA_DIR``, created if missing), skipping
    files already there with the right checksum. The Colab install cell of every chapter calls this."""
    root = Path(dest) if dest is not None else Path(os.environ.get(ENV_VAR, "").strip() or "cks_data").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"fetch {name} -> {root / name}", flush=True)
        fetch(name, root)
    return root


def verify(name: str, root=None) -> dict[str, list[str]]:
    """Check a local copy of a set against its checksums.

    Returns:
        ``{"missing": [...], "mismatch": [...]}`` local paths (both empty when the copy is intact).
    """
    info = DATASETS[name]
    folder = Path(root) if root is not None else data_dir() / info.name
    report = {"missing": [], "mismatch": []}
    for local, _, digest in info.files:
        path = folder / local
        if not path.is_file():
            report["missing"].append(local)
        elif digest is not None and sha256_file(path) != digest:
            report["mismatch"].append(local)
    return report
