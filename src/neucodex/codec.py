"""Spikes ⇄ bytes: lossless packets for one timestep's spike map (or a batch of them).

A packet is a 22-byte header followed by the payload::

    magic 'N' | version u8 | format u8 | flags u8 | timestep u16 | N u16 | C u16 | H u16 | W u16
    | payload_len u32 | crc32 u32          (little-endian; CRC over header-without-CRC + payload)

Payload formats:

- ``bitmap``  — 1 bit per neuron (``numpy.packbits``), ``ceil(n/8)`` bytes.
- ``sparse``  — the flat indices of the ones, bit-packed at ``ceil(log2 n)`` bits each (the number
  of padding bits is in flags bits 1–3); wins at low firing rates and on small maps.
- ``entropy`` — arithmetic (ANS) coding with Bernoulli probabilities via ``constriction``: either
  one probability per packet sent in-band (u16; adapts to each packet), or per-channel
  probabilities learned from data and shared by both ends (``channel_probs``; flag bit 0).
- ``uint8``   — 8-bit quantised real features, one byte each: BottleNet++'s wire form.
- ``context`` — ANS coding with learned probabilities ``p[k, c]`` conditioned on what the receiver
  already holds: the same neuron's bit at the previous timestep (``k`` = 0 or 1), or ``k`` = 2 at
  timestep 0 (:mod:`neucodex.entropy` learns them; both ends keep the previous map).
- ``context-ac`` — the same model, arithmetic-coded to the bit: on small maps, where an ANS
  stream's whole 32-bit words would be most of the packet.

Each format is one small class in a registry (:data:`REGISTRY`): a new format is one class with
``@register``; ``auto``, the CLIs and the server take the list from it. ``auto`` picks the smallest
spike format per packet. ``decode`` of anything malformed raises
:class:`CodecError` and nothing else, and never allocates more than the declared shape, which is
itself bounded by ``max_elements``.

NumPy only (no PyTorch): the torch-free edge runs this same module. ``encode`` takes a NumPy
array or a torch tensor (float32, or bits as bool / 0-1 uint8, which skip the float binary
check); ``decode`` returns a NumPy ``float32`` array, ``decode_packet``/``decode_payload`` with
``dtype=np.uint8`` the 0/1 bits without a float conversion (the server's path).
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import numpy as np

from .bitcoding import (
    AC_MAX_ELEMENTS,
    AC_ONE,
    SPARSE_PAD_SHIFT,
    ac_decode,
    ac_encode,
    ans_decode,
    ans_encode,
    context_p,
    entropy_decode,
    entropy_encode,
    sparse_decode,
    sparse_encode,
    unpack_bitmap,
)
from .errors import CodecError

VERSION = 1
MAGIC = b"N"
_HEADER = struct.Struct("<cBBBHHHHHI")  # everything before the CRC
_CRC = struct.Struct("<I")
HEADER_BYTES = _HEADER.size + _CRC.size
_HEADER_CRC = struct.Struct(_HEADER.format + "I")  # both read in one call
MAX_ELEMENTS = 1 << 24
"""Default bound on N*C*H*W a decoder accepts (16 M neurons, a 2 MiB bitmap)."""

_FLAG_CHANNEL_MODEL = 1  # entropy: per-channel learned probabilities


class Packet(NamedTuple):
    """A decoded packet: the map plus the header fields that travel with it (a tuple: built once
    per frame on the server's hot path)."""

    array: np.ndarray  # [N, C, H, W]: float32, or 0/1 uint8 when decoded with dtype=np.uint8
    format: str
    timestep: int


def _as_array(x) -> np.ndarray:
    if type(x) is np.ndarray:  # the usual case, before any attribute lookup
        return x
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _shape4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) == 3:
        return (1, *shape)  # type: ignore[return-value]
    if len(shape) == 4:
        return shape  # type: ignore[return-value]
    raise CodecError(f"expected a [C, H, W] or [N, C, H, W] map, got shape {tuple(shape)}")


_ONE_F32 = np.float32(1.0).view(np.uint32)
_BOOL, _UINT8, _FLOAT32 = np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.float32)


def _binary(a: np.ndarray) -> np.ndarray:
    """``a`` as 0/1 (bool or uint8), or :class:`CodecError` if it holds any other value."""
    if a.dtype is _BOOL:  # dtypes of built-in types are singletons: identity is the fast compare
        return a
    if a.dtype is _UINT8:  # bits already: one max, and packbits reads them as they are
        if a.size and a.max() > 1:
            raise CodecError("spike formats need a binary map (values 0 and 1); use 'uint8' for real features")
        return a
    if a.dtype is _FLOAT32 and a.flags.c_contiguous:  # the spikes' usual form: two counts, no temporaries
        u = a.view(np.uint32)
        ones = u == _ONE_F32
        if np.count_nonzero(u) == np.count_nonzero(ones):  # every non-zero word is exactly 1.0
            return ones
    if np.any((a != 0) & (a != 1)):  # the general check (also takes -0.0 and other dtypes)
        raise CodecError("spike formats need a binary map (values 0 and 1); use 'uint8' for real features")
    return a.astype(np.uint8)


class Priors(NamedTuple):
    """What both ends share about a code besides the packet: learned probabilities, and the
    previous timestep's map of the same sample (flat 0/1; ``None`` at timestep 0)."""

    channel_probs: np.ndarray | None = None  # [C]
    context_probs: np.ndarray | None = None  # [3, C]: previous bit 0, previous bit 1, timestep 0
    previous: np.ndarray | None = None


class Format:
    """One payload format: its wire code, the flag bits it may set, and both halves."""

    name: str = ""
    code: int = -1
    flags: int = 0  # the flag bits this format may set
    spikes: bool = True  # a spike format (``auto`` tries it); else real features

    def usable(self, priors: Priors, timestep: int, size: int) -> bool:
        """Whether ``auto`` can try it on a map of ``size`` neurons with what both ends share."""
        return True

    def encode(self, bits: np.ndarray, shape4, priors: Priors, timestep: int) -> tuple[bytes, int]:
        """(payload, flags) for flat ``bits`` (0/1; real values in [0, 1] for a feature format)."""
        raise NotImplementedError

    def decode(self, payload, shape4, flags: int, priors: Priors, timestep: int) -> np.ndarray:
        """The flat 0/1 uint8 map (a feature format: float32 in [0, 1])."""
        raise NotImplementedError


REGISTRY: dict[str, Format] = {}


def register(cls: type[Format]) -> type[Format]:
    """Add a format to the registry (names and wire codes must be new)."""
    fmt = cls()
    if fmt.name in REGISTRY or any(f.code == fmt.code for f in REGISTRY.values()):
        raise ValueError(f"codec format {fmt.name!r} (code {fmt.code}) is already registered")
    REGISTRY[fmt.name] = fmt
    return cls


@register
class Bitmap(Format):
    name, code = "bitmap", 0

    def encode(self, bits, shape4, priors, timestep):
        return np.packbits(bits).tobytes(), 0

    def decode(self, payload, shape4, flags, priors, timestep):
        return unpack_bitmap(payload, int(np.prod(shape4)))


@register
class Sparse(Format):
    name, code, flags = "sparse", 1, 7 << SPARSE_PAD_SHIFT

    def encode(self, bits, shape4, priors, timestep):
        return sparse_encode(bits)

    def decode(self, payload, shape4, flags, priors, timestep):
        return sparse_decode(payload, int(np.prod(shape4)), flags)


@register
class Entropy(Format):
    """In-band probability, or (flag bit 0) the learned per-channel probabilities."""

    name, code, flags = "entropy", 2, _FLAG_CHANNEL_MODEL

    def encode(self, bits, shape4, priors, timestep):
        learned = priors.channel_probs is not None
        return entropy_encode(bits, shape4, priors.channel_probs), _FLAG_CHANNEL_MODEL if learned else 0

    def decode(self, payload, shape4, flags, priors, timestep):
        learned = bool(flags & _FLAG_CHANNEL_MODEL)
        if learned and priors.channel_probs is None:
            raise CodecError("packet was coded with learned per-channel probabilities; pass channel_probs")
        return entropy_decode(payload, shape4, priors.channel_probs if learned else None)


@register
class Uint8(Format):
    name, code, spikes = "uint8", 3, False

    def encode(self, values, shape4, priors, timestep):
        if values.dtype != np.uint8:
            if np.any((values < 0) | (values > 1)):
                raise CodecError("uint8 format takes values in [0, 1] (8-bit quantised features)")
            values = np.rint(values.astype(np.float64) * 255).astype(np.uint8)
        return values.tobytes(), 0

    def decode(self, payload, shape4, flags, priors, timestep):
        n = int(np.prod(shape4))
        if len(payload) != n:
            raise CodecError(f"uint8 payload is {len(payload)} bytes, expected {n}")
        return np.frombuffer(payload, np.uint8).astype(np.float32) / 255.0


@register
class Context(Format):
    """Learned ``p[k, c]``, ``k`` the same neuron's previous bit (or 2 at timestep 0): one fixed
    Bernoulli model per (channel, context) group, all in one ANS stream."""

    name, code = "context", 4

    def usable(self, priors, timestep, size):
        return priors.context_probs is not None and (timestep == 0 or priors.previous is not None)

    def _groups(self, shape4, priors: Priors, timestep: int) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """(the positions in group order, [(size, p)] per non-empty group)."""
        n, c, h, w = shape4
        if priors.context_probs is None:
            raise CodecError("the context format codes with the learned context model; pass context_probs")
        probs = context_p(priors.context_probs, c)
        channel = np.broadcast_to(np.arange(c, dtype=np.int64)[None, :, None], (n, c, h * w)).reshape(-1)
        if timestep == 0:
            context = np.full(channel.size, 2, np.int64)
        else:
            if priors.previous is None:
                raise CodecError(f"context format at timestep {timestep} needs the previous timestep's map")
            prev = np.asarray(priors.previous).reshape(-1)
            if prev.size != channel.size:
                raise CodecError(f"previous map has {prev.size} elements, the packet {channel.size}")
            context = (prev != 0).astype(np.int64)
        key = channel * 3 + context
        order = np.argsort(key, kind="stable")
        counts = np.bincount(key, minlength=3 * c)
        groups = [(int(k), float(probs[g % 3, g // 3])) for g, k in enumerate(counts) if k]
        return order, groups

    def encode(self, bits, shape4, priors, timestep):
        order, groups = self._groups(shape4, priors, timestep)
        flat = bits[order]
        parts, at = [], 0
        for size, p in groups:
            parts.append((flat[at : at + size], p))
            at += size
        return ans_encode(parts), 0

    def decode(self, payload, shape4, flags, priors, timestep):
        order, groups = self._groups(shape4, priors, timestep)
        values = np.empty(order.size, np.uint8)
        values[order] = ans_decode(payload, groups) if groups else np.zeros(0, np.uint8)
        return values


@register
class ContextAC(Context):
    """The ``context`` model, arithmetic-coded to the bit (a binary coder with 32-bit integer
    intervals, 16-bit probabilities, a two-bit termination and no trailing zero bytes).

    Why: an ANS stream ends in whole 32-bit words, which on a small map (a few hundred neurons,
    where a rate-trained code sends a few dozen bits per step) is most of the packet. Coding is a
    Python loop per neuron, so it is offered only up to :data:`AC_MAX_ELEMENTS` neurons; a decoder
    accepts only the exact bytes the encoder writes for what it decoded (re-encoded and compared),
    so a malformed payload is a :class:`CodecError`, never a different map.
    """

    name, code = "context-ac", 5

    def usable(self, priors, timestep, size):
        return size <= AC_MAX_ELEMENTS and super().usable(priors, timestep, size)

    def _ones(self, shape4, priors: Priors, timestep: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions in coding order, each one's P(1) in 1/65536)."""
        if int(np.prod(shape4)) > AC_MAX_ELEMENTS:
            raise CodecError(f"the {self.name} format codes maps of at most {AC_MAX_ELEMENTS} neurons")
        order, groups = self._groups(shape4, priors, timestep)
        q = np.concatenate([np.full(size, p) for size, p in groups]) if groups else np.zeros(0)
        return order, np.clip(np.rint(q * AC_ONE), 1, AC_ONE - 1).astype(np.int64)

    def encode(self, bits, shape4, priors, timestep):
        order, q = self._ones(shape4, priors, timestep)
        return ac_encode(bits[order].tolist(), q.tolist()), 0

    def decode(self, payload, shape4, flags, priors, timestep):
        order, q = self._ones(shape4, priors, timestep)
        if len(payload) > 2 * q.size + 8:  # every neuron costs at most 16 bits (P ≥ 1/65536)
            raise CodecError(f"{self.name} payload of {len(payload)} bytes is too long for {q.size} neurons")
        ones = q.tolist()
        decoded = ac_decode(bytes(payload), ones)
        if ac_encode(decoded, ones) != bytes(payload):
            raise CodecError(f"{self.name} payload is not what the encoder writes for the map it decodes to")
        values = np.empty(order.size, np.uint8)
        values[order] = decoded
        return values


FORMATS = {name: f.code for name, f in REGISTRY.items()}
"""Every format's wire code, by name."""
SPIKE_FORMATS = tuple(name for name, f in REGISTRY.items() if f.spikes)
CHOICES = ("auto", *REGISTRY)
"""What a ``--codec`` option takes."""
_FORMAT_NAMES = {f.code: name for name, f in REGISTRY.items()}
_VALID_LEADS = frozenset(
    MAGIC + bytes((VERSION, f.code, flags)) for f in REGISTRY.values() for flags in range(256) if not flags & ~f.flags
)
"""Every valid (magic, version, format, flags) start of a packet."""


def encode(
    x,
    format: str = "auto",
    *,
    timestep: int = 0,
    channel_probs: np.ndarray | None = None,
    context_probs: np.ndarray | None = None,
    previous=None,
) -> bytes:
    """One packet for a ``[C, H, W]`` (or ``[N, C, H, W]``) map at ``timestep``.

    ``auto`` tries every spike format it can and keeps the smallest: the learned ones compete
    when their probabilities are given (``context`` also needs ``previous``, the same map at
    ``timestep - 1``), so learned models never cost more than going without. Real-valued features
    need ``format='uint8'``.
    """
    a = _as_array(x)
    shape4 = _shape4(a.shape)
    if max(shape4) > 0xFFFF:
        raise CodecError(f"each dimension must be ≤ 65535, got {tuple(a.shape)}")
    if not 0 <= timestep <= 0xFFFF:
        raise CodecError(f"timestep must be in 0..65535, got {timestep}")
    if format == "bitmap":  # the hot path, inline: one pass to bits, one packbits
        payload, flags = np.packbits(_binary(a.reshape(-1))).tobytes(), 0
    else:
        priors = Priors(channel_probs, context_probs, None if previous is None else _as_array(previous))
        if format == "auto":
            try:
                bits = _binary(a.reshape(-1))
            except CodecError:
                raise CodecError("auto picks among spike formats and needs a binary map; use 'uint8'") from None
            candidates = [
                (f.encode(bits, shape4, priors, timestep), name)
                for name, f in REGISTRY.items()
                if f.spikes and f.usable(priors, timestep, bits.size)
            ]
            if channel_probs is not None:  # the in-band entropy code competes with the learned one
                candidates.append(
                    (REGISTRY["entropy"].encode(bits, shape4, priors._replace(channel_probs=None), timestep), "entropy")
                )
            (payload, flags), format = min(candidates, key=lambda c: len(c[0][0]))
        else:
            fmt = REGISTRY.get(format)
            if fmt is None:
                raise CodecError(f"unknown format {format!r}; choose from {', '.join(CHOICES)}")
            flat = a.reshape(-1)
            payload, flags = fmt.encode(_binary(flat) if fmt.spikes else flat, shape4, priors, timestep)
    head = _HEADER.pack(MAGIC, VERSION, FORMATS[format], flags, timestep, *shape4, len(payload))
    return b"".join((head, _CRC.pack(zlib.crc32(payload, zlib.crc32(head))), payload))


def _check_lead(magic: bytes, version: int, fmt: int, flags: int) -> None:
    """The error for a packet whose first four bytes are not a valid combination."""
    if magic != MAGIC:
        raise CodecError("not a neucodex packet (bad magic byte)")
    if version != VERSION:
        raise CodecError(f"packet format version {version} is not supported (this codec reads {VERSION})")
    if fmt not in _FORMAT_NAMES:
        raise CodecError(f"unknown payload format code {fmt}")
    raise CodecError(f"invalid flags {flags:#x} for format {_FORMAT_NAMES[fmt]}")


def read_header(data: bytes, max_elements: int = MAX_ELEMENTS) -> dict:
    """Validate and return the header fields of a packet (no payload decoding): format, flags,
    timestep, shape, elements, and the payload as a memoryview into ``data`` (no copy)."""
    if type(data) is not bytes:
        if not isinstance(data, bytearray | memoryview):
            raise CodecError(f"a packet is bytes, got {type(data).__name__}")
        data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise CodecError(f"packet truncated: {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, fmt, flags, timestep, n, c, h, w, length, crc = _HEADER_CRC.unpack_from(data)
    if data[:4] not in _VALID_LEADS:  # magic, version, format and flags valid: one set lookup
        _check_lead(magic, version, fmt, flags)
    elements = n * c * h * w
    if elements == 0 or elements > max_elements:
        raise CodecError(f"declared shape {n}x{c}x{h}x{w} is empty or exceeds {max_elements} elements")
    if len(data) != HEADER_BYTES + length:
        raise CodecError(f"packet length {len(data)} does not match its header ({HEADER_BYTES} + {length} bytes)")
    view = memoryview(data)
    payload = view[HEADER_BYTES:]  # no copy
    if zlib.crc32(payload, zlib.crc32(view[: _HEADER.size])) != crc:
        raise CodecError("packet CRC32 mismatch (corrupted in transit)")
    return {
        "format": _FORMAT_NAMES[fmt],
        "flags": flags,
        "timestep": timestep,
        "shape": (n, c, h, w),
        "elements": elements,
        "payload": payload,
    }


def decode_packet(
    data: bytes,
    *,
    channel_probs: np.ndarray | None = None,
    context_probs: np.ndarray | None = None,
    previous=None,
    max_elements: int = MAX_ELEMENTS,
    dtype: type = np.float32,
) -> Packet:
    """Decode a packet into an array of its declared shape, plus format and timestep."""
    return decode_payload(read_header(data, max_elements), channel_probs, dtype, context_probs, previous)


def decode_payload(
    header: dict,
    channel_probs: np.ndarray | None = None,
    dtype: type = np.float32,
    context_probs: np.ndarray | None = None,
    previous=None,
) -> Packet:
    """The map of a packet whose header :func:`read_header` has checked (and the caller has
    vetted: shape, format, timestep), so a receiver parses and CRC-checks each packet once.

    ``dtype=np.uint8`` returns a spike map as its 0/1 bits without a float conversion — what a
    receiver that converts a whole batch at once wants; a ``uint8``-format packet (real features)
    always decodes to float32 in [0, 1]. ``previous``: this sample's map at the timestep before
    (the ``context`` format codes against it).
    """
    shape4, name = header["shape"], header["format"]
    if dtype is not np.uint8 and dtype is not np.float32:
        if np.dtype(dtype) not in (_UINT8, _FLOAT32):
            raise CodecError(f"decode dtype must be float32 or uint8, got {dtype}")
        dtype = np.uint8 if np.dtype(dtype) == _UINT8 else np.float32
    if name == "bitmap":  # the hot path, inline (a registry call costs as much as the unpack itself)
        values = unpack_bitmap(header["payload"], header["elements"])
    else:
        fmt = REGISTRY[name]
        priors = Priors(channel_probs, context_probs, None if previous is None else _as_array(previous))
        values = fmt.decode(header["payload"], shape4, header["flags"], priors, header["timestep"])
        if not fmt.spikes:
            return Packet(values.reshape(shape4), name, header["timestep"])
    if dtype is np.float32:
        values = values.astype(np.float32)
    return Packet(values.reshape(shape4), name, header["timestep"])


def decode(
    data: bytes,
    *,
    channel_probs: np.ndarray | None = None,
    context_probs: np.ndarray | None = None,
    previous=None,
    max_elements: int = MAX_ELEMENTS,
) -> np.ndarray:
    """The ``[N, C, H, W]`` float32 array a packet carries."""
    return decode_packet(
        data, channel_probs=channel_probs, context_probs=context_probs, previous=previous, max_elements=max_elements
    ).array


def fit_channel_probs(spikes) -> np.ndarray:
    """Per-channel firing probabilities from spike maps ``[..., C, H, W]`` (learned entropy model)."""
    a = _as_array(spikes).astype(np.float64)
    if a.ndim < 3:
        raise CodecError(f"need [..., C, H, W] spike maps, got shape {a.shape}")
    axes = tuple(i for i in range(a.ndim) if i != a.ndim - 3)
    return probs_from_counts(a.sum(axis=axes), a.size / a.shape[-3])


def probs_from_counts(ones: np.ndarray, count: float) -> np.ndarray:
    """Per-channel firing probabilities from per-channel spike counts out of ``count`` positions each."""
    return ((np.asarray(ones, np.float64) + 0.5) / (count + 1.0)).astype(np.float64)  # Krichevsky–Trofimov
