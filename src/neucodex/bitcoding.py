"""Coders over flat bit arrays, for the codec's payload formats: bit-packed sparse indices, ANS
streams with fixed Bernoulli models (``constriction``), and a bit-exact binary arithmetic coder.

Each decoder raises :class:`~neucodex.errors.CodecError` on anything malformed and nothing else;
NumPy and ``constriction`` only (the torch-free edge runs this module).
"""

from __future__ import annotations

import struct
from itertools import pairwise

import constriction
import numpy as np

from .errors import CodecError

SPARSE_PAD_SHIFT = 1  # sparse: padding bits of the packed indices in flags bits 1-3
P_SCALE = 65535  # in-band probability as u16; 0 = all zeros, 65535 = all ones
PROB_EPS = 1e-6  # keep learned probabilities away from 0 and 1 (every symbol must stay codable)


def index_bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def sparse_encode(bits: np.ndarray) -> tuple[bytes, int]:
    """Indices of the ones, MSB-first at ``index_bits(n)`` bits each; flags carry the padding."""
    width = index_bits(bits.size)  # ≤ 24: dimensions are u16 and MAX_ELEMENTS is 2^24
    big_endian = np.flatnonzero(bits).astype(">u4").view(np.uint8).reshape(-1, 4)
    packed_bits = np.unpackbits(big_endian, axis=1)[:, 32 - width :].reshape(-1)  # each index MSB-first
    pad = (-packed_bits.size) % 8
    return np.packbits(packed_bits).tobytes(), pad << SPARSE_PAD_SHIFT


SMALL_SPARSE = 64
"""Up to this many indices a sparse payload is decoded as one Python integer."""


def sparse_decode(payload: bytes, n: int, flags: int) -> np.ndarray:
    width = index_bits(n)
    pad = (flags >> SPARSE_PAD_SHIFT) & 7
    total = len(payload) * 8 - pad
    if total < 0 or total % width or total // width > n or (not payload and pad):
        raise CodecError(
            f"sparse payload of {len(payload)} bytes (padding {pad}) is not a list of ≤ {n} {width}-bit indices"
        )
    count = total // width
    if count <= SMALL_SPARSE:  # a few indices: one Python int beats array passes (bench/codec_throughput.py)
        word = int.from_bytes(payload, "big")
        if word & ((1 << pad) - 1):
            raise CodecError("sparse padding bits are not zero")
        word >>= pad
        mask = (1 << width) - 1
        idx = [(word >> (width * (count - 1 - i))) & mask for i in range(count)]
        if any(b <= a for a, b in pairwise(idx)) or (idx and idx[-1] >= n):
            raise CodecError("sparse indices must be strictly increasing and inside the map")
    else:
        raw = np.unpackbits(np.frombuffer(payload, np.uint8))
        if raw[total:].any():
            raise CodecError("sparse padding bits are not zero")
        words = np.zeros((count, 32), np.uint8)  # each index's bits, right-aligned in 32
        words[:, 32 - width :] = raw[:total].reshape(-1, width)
        idx = np.packbits(words, axis=1).view(">u4").reshape(-1).astype(np.int64)  # signed: diff below
        if idx.size and (idx[-1] >= n or np.any(np.diff(idx) <= 0)):
            raise CodecError("sparse indices must be strictly increasing and inside the map")
    values = np.zeros(n, np.uint8)
    values[idx] = 1
    return values


def channel_p(channel_probs: np.ndarray, channels: int) -> np.ndarray:
    probs = np.asarray(channel_probs, dtype=np.float64).reshape(-1)
    if probs.size != channels:
        raise CodecError(f"channel_probs has {probs.size} entries but the map has {channels} channels")
    if not np.isfinite(probs).all():
        raise CodecError("channel_probs must be finite probabilities")
    return np.clip(probs, PROB_EPS, 1 - PROB_EPS)


def bernoulli(p: float):
    return constriction.stream.model.Bernoulli(float(p), perfect=False)


def ans_encode(groups: list[tuple[np.ndarray, float]]) -> bytes:
    """ANS-code each group of bits with its own fixed Bernoulli model (stack: encode in reverse)."""
    coder = constriction.stream.stack.AnsCoder()
    for bits, p in reversed(groups):
        coder.encode_reverse(bits.astype(np.int32), bernoulli(p))
    return coder.get_compressed().astype("<u4").tobytes()


def ans_decode(payload: bytes, groups: list[tuple[int, float]]) -> np.ndarray:
    if len(payload) % 4:
        raise CodecError("entropy payload is not a whole number of 32-bit words")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        parts = [np.asarray(coder.decode(bernoulli(p), size), dtype=np.uint8) for size, p in groups]
        exhausted = coder.is_empty()
    except Exception as e:  # constriction raises its own errors on inconsistent streams
        raise CodecError(f"entropy payload does not decode: {e}") from None
    if not exhausted:
        raise CodecError("entropy payload has data left after the declared shape")
    return np.concatenate(parts)


def entropy_encode(bits: np.ndarray, shape4, channel_probs: np.ndarray | None) -> bytes:
    """In-band: a u16 firing probability, then one ANS stream; learned: one model per channel."""
    if channel_probs is not None:
        n, c, h, w = shape4
        by_channel = bits.reshape(n, c, h * w).transpose(1, 0, 2).reshape(c, -1)
        return ans_encode(list(zip(by_channel, channel_p(channel_probs, c), strict=True)))
    ones = int(bits.sum())
    if ones in (0, bits.size):
        return struct.pack("<H", P_SCALE if ones else 0)
    q = min(max(round(ones / bits.size * P_SCALE), 1), P_SCALE - 1)
    return struct.pack("<H", q) + ans_encode([(bits, q / P_SCALE)])


def entropy_decode(payload: bytes, shape4, channel_probs: np.ndarray | None) -> np.ndarray:
    n, c, h, w = shape4
    if channel_probs is not None:
        probs = channel_p(channel_probs, c)
        by_channel = ans_decode(payload, [(n * h * w, p) for p in probs])
        return by_channel.reshape(c, n, h * w).transpose(1, 0, 2).reshape(-1)
    size = n * c * h * w
    if len(payload) < 2:
        raise CodecError("entropy payload too short for its probability field")
    (q,) = struct.unpack_from("<H", payload)
    if q in (0, P_SCALE):
        if len(payload) != 2:
            raise CodecError("entropy payload of a constant map must hold only its probability")
        return np.full(size, 1 if q else 0, dtype=np.uint8)
    return ans_decode(payload[2:], [(size, q / P_SCALE)])


def unpack_bitmap(payload, n: int) -> np.ndarray:
    if len(payload) != (n + 7) // 8:
        raise CodecError(f"bitmap payload is {len(payload)} bytes, expected {(n + 7) // 8}")
    raw = np.frombuffer(payload, np.uint8)
    tail = n & 7
    if tail and raw[-1] & ((1 << (8 - tail)) - 1):
        raise CodecError("bitmap padding bits are not zero")
    return np.unpackbits(raw, count=n) if tail else np.unpackbits(raw)


AC_MAX_ELEMENTS = 1024
"""The largest map the bit-exact arithmetic format codes (a Python loop per neuron)."""


AC_ONE = 1 << 16


AC_TOP, AC_HALF, AC_QUARTER = (1 << 32) - 1, 1 << 31, 1 << 30


def ac_encode(bits: list[int], ones: list[int]) -> bytes:
    """Binary arithmetic coding (Witten, Neal and Cleary's carry-less coder) of ``bits``, each with
    ``P(1) = ones[i] / 65536``; the value is closed with two bits and zero-padded to bytes, and
    trailing zero bytes are left out (the decoder reads past the end as zeros)."""
    low, high, pending, out = 0, AC_TOP, 0, []
    emit = out.append
    for bit, q in zip(bits, ones, strict=True):
        split = low + (((high - low + 1) * (AC_ONE - q)) >> 16) - 1
        if bit:
            low = split + 1
        else:
            high = split
        while True:
            if high < AC_HALF:
                emit(0)
                out.extend([1] * pending)
                pending = 0
            elif low >= AC_HALF:
                emit(1)
                out.extend([0] * pending)
                pending = 0
                low -= AC_HALF
                high -= AC_HALF
            elif low >= AC_QUARTER and high < AC_HALF + AC_QUARTER:
                pending += 1
                low -= AC_QUARTER
                high -= AC_QUARTER
            else:
                break
            low, high = 2 * low, 2 * high + 1
    pending += 1
    if low < AC_QUARTER:
        emit(0)
        out.extend([1] * pending)
    else:
        emit(1)
        out.extend([0] * pending)
    return np.packbits(np.asarray(out, np.uint8)).tobytes().rstrip(b"\0")


def ac_decode(payload: bytes, ones: list[int]) -> list[int]:
    """The ``len(ones)`` bits :func:`ac_encode` wrote into ``payload``."""
    stream = np.unpackbits(np.frombuffer(payload, np.uint8)).tolist()
    stream += [0] * max(0, 32 - len(stream))  # reads past the end are zeros
    value = int("".join(map(str, stream[:32])), 2)
    at, low, high, bits = 32, 0, AC_TOP, []
    for q in ones:
        split = low + (((high - low + 1) * (AC_ONE - q)) >> 16) - 1
        if value > split:
            bits.append(1)
            low = split + 1
        else:
            bits.append(0)
            high = split
        while True:
            if high < AC_HALF:
                pass
            elif low >= AC_HALF:
                low -= AC_HALF
                high -= AC_HALF
                value -= AC_HALF
            elif low >= AC_QUARTER and high < AC_HALF + AC_QUARTER:
                low -= AC_QUARTER
                high -= AC_QUARTER
                value -= AC_QUARTER
            else:
                break
            if at >= len(stream):
                stream.append(0)
            low, high, value = 2 * low, 2 * high + 1, 2 * value + stream[at]
            at += 1
    return bits


def context_p(context_probs: np.ndarray, channels: int) -> np.ndarray:
    probs = np.asarray(context_probs, dtype=np.float64)
    if probs.shape != (3, channels):
        raise CodecError(f"context_probs has shape {probs.shape}; the map needs (3, {channels})")
    if not np.isfinite(probs).all():
        raise CodecError("context_probs must be finite probabilities")
    return np.clip(probs, PROB_EPS, 1 - PROB_EPS)
