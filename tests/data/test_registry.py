"""cks.data.registry: data_dir, checksummed downloads (file:// URLs), manifests."""

import hashlib
import os

import pytest

from cks.data.registry import DATASETS, DatasetInfo, data_dir, download_file, fetch, read_manifest, verify
from cks.errors import CksDataError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CKS_DATA_DIR", raising=False)
    assert data_dir(required=False) is None
    with pytest.raises(CksDataError, match="CKS_DATA_DIR is not set"):
        data_dir()
    monkeypatch.setenv("CKS_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(CksDataError, match="missing.*does not exist"):
        data_dir()
    monkeypatch.setenv("CKS_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path


def test_download_file_and_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"cells" * 1000)
    out = download_file(src.as_uri(), tmp_path / "dl" / "a.bin", _sha(src.read_bytes()))
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(CksDataError, match="sha256 mismatch"):
        download_file(src.as_uri(), tmp_path / "dl" / "b.bin", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["a.bin"]  # no partial file left
    with pytest.raises(CksDataError, match="download failed"):
        download_file((tmp_path / "nothing").as_uri(), tmp_path / "dl" / "c.bin")


def test_fetch_set_from_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "sub dir").mkdir(parents=True)
    files = {"a.txt": b"alpha", "sub dir/b.txt": b"beta"}
    for rel, data in files.items():
        (mirror / rel).write_bytes(data)
    info = DatasetInfo(name="toy", homepage="-", base_url=mirror.as_uri(),
                       files=tuple((f"local/{rel}", rel, _sha(d)) for rel, d in files.items()))
    target = fetch(info, tmp_path / "data")
    assert (target / "local" / "sub dir" / "b.txt").read_bytes() == b"beta"
    stamp = os.stat(target / "local" / "a.txt").st_mtime_ns
    fetch(info, tmp_path / "data")  # already there and intact: skipped
    assert os.stat(target / "local" / "a.txt").st_mtime_ns == stamp
    only = fetch(info, tmp_path / "other", files="local/a.*")
    assert [p.name for p in only.rglob("*") if p.is_file()] == ["a.txt"]
    bad = DatasetInfo(name="toy", homepage="-", base_url=mirror.as_uri(), files=(("a.txt", "a.txt", "f" * 64),))
    with pytest.raises(CksDataError, match="sha256 mismatch"):
        fetch(bad, tmp_path / "bad")


def test_fetch_without_address(tmp_path):
    with pytest.raises(CksDataError, match="89s3ymz5wn"):
        fetch("a431", tmp_path)
    z = tmp_path / "A431.zip"
    z.write_bytes(b"PK")
    assert (fetch("a431", tmp_path / "d", url=z.as_uri()) / "A431.zip").read_bytes() == b"PK"
    with pytest.raises(CksDataError, match="unknown data set"):
        fetch("nope", tmp_path)


def test_registry_entries():
    usi = DATASETS["usiigaci_nih3t3_phase"]
    assert len(usi.files) == 59 and all(len(d) == 64 for _, _, d in usi.files)
    remote = dict((local, remote) for local, remote, _ in usi.files)
    assert remote["train/set1/raw.tif"] == "Mask R-CNN/train/set1/raw.tif"
    assert len(read_manifest("deepcell2016_covertlab")) == 80
    assert all(d is None for _, _, d in DATASETS["livecell"].files)  # never had the files: no checksums
    assert DATASETS["a431"].base_url is None


@pytest.mark.realdata
def test_real_sets_match_manifests(real_data, tmp_path):
    for name in ("usiigaci_nih3t3_phase", "deepcell2016_covertlab"):
        assert verify(name, real_data / name) == {"missing": [], "mismatch": []}
    mirror = tmp_path / "mirror"  # upstream layout: the sets live under "Mask R-CNN/"
    mirror.mkdir()
    (mirror / "Mask R-CNN").symlink_to(real_data / "usiigaci_nih3t3_phase")
    target = fetch("usiigaci_nih3t3_phase", tmp_path / "data", url=mirror.as_uri(), files="train/set2/*")
    assert sorted(p.name for p in (target / "train" / "set2").iterdir()) == ["instances_ids.png", "raw.tif"]
