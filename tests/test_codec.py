"""Codec: exact round trips, malformed packets → CodecError only, entropy-coding efficiency."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neucodex import codec
from neucodex.codec import CodecError

FORMATS = ["bitmap", "sparse", "entropy", "auto"]


def spikes(shape, rate, seed=0):
    return torch.from_numpy((np.random.default_rng(seed).random(shape) < rate).astype(np.float32))


@st.composite
def spike_maps(draw):
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=3, max_size=4)))
    rate = draw(st.sampled_from([0.0, 0.001, 0.05, 0.3, 0.5, 0.9, 1.0]))
    return spikes(shape, rate, draw(st.integers(0, 2**16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=spike_maps(), fmt=st.sampled_from(FORMATS), t=st.integers(0, 65535))
def test_round_trip_exact(x, fmt, t):
    pkt = codec.encode(x, fmt, timestep=t)
    out = codec.decode_packet(pkt)
    assert out.timestep == t
    assert torch.equal(torch.from_numpy(out.array).reshape(x.shape), x)
    assert torch.from_numpy(out.array).shape == ((1, *x.shape) if x.dim() == 3 else x.shape)


@settings(max_examples=30, deadline=None)
@given(x=spike_maps())
def test_round_trip_with_learned_channel_probs(x):
    probs = codec.fit_channel_probs(x)
    pkt = codec.encode(x, "entropy", channel_probs=probs)
    assert torch.equal(torch.from_numpy(codec.decode(pkt, channel_probs=probs)).reshape(x.shape), x)
    with pytest.raises(CodecError, match="pass channel_probs"):
        codec.decode(pkt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bits_in_and_bits_out_equal_the_float32_path(fmt):
    """bool or 0/1 uint8 maps encode to the same packet as float32; decode_payload with
    dtype=np.uint8 gives the same map as 0/1 bytes (what the server decodes)."""
    x = spikes((16, 5, 5), 0.2).numpy()
    pkt = codec.encode(x, fmt, timestep=2)
    assert codec.encode(x.astype(bool), fmt, timestep=2) == pkt == codec.encode(x.astype(np.uint8), fmt, timestep=2)
    bits = codec.decode_payload(codec.read_header(pkt), dtype=np.uint8)
    assert bits.array.dtype == np.uint8 and bits.timestep == 2
    assert np.array_equal(bits.array, codec.decode(pkt).astype(np.uint8))
    with pytest.raises(CodecError, match="binary map"):
        codec.encode(np.full((2, 2, 2), 2, np.uint8), fmt)
    with pytest.raises(CodecError, match="dtype must be float32 or uint8"):
        codec.decode_packet(pkt, dtype=np.int16)


def test_auto_is_smallest():
    for rate in (0.0005, 0.05, 0.5):
        x = spikes((64, 8, 8), rate)
        sizes = {
            f: len(codec.encode(x, f))
            for f in codec.SPIKE_FORMATS
            if codec.REGISTRY[f].usable(codec.Priors(), 0, x.numel())
        }
        assert len(codec.encode(x, "auto")) == min(sizes.values())


def test_uint8_round_trip_is_8bit_exact():
    x = torch.rand(2, 8, 5, 5)
    q = torch.round(x * 255) / 255
    assert torch.equal(torch.from_numpy(codec.decode(codec.encode(q, "uint8"))), q)
    assert len(codec.encode(q, "uint8")) == codec.HEADER_BYTES + q.numel()


def entropy_bits(p: float) -> float:
    return -p * np.log2(p) - (1 - p) * np.log2(1 - p)


@pytest.mark.parametrize("n", [4096, 32768])
def test_entropy_coding_efficiency(n):
    p = 0.05
    x = spikes((n // 64, 8, 8), p, seed=n)
    payload = lambda f: (len(codec.encode(x, f)) - codec.HEADER_BYTES) * 8  # noqa: E731
    bound = entropy_bits(p) * n
    assert payload("entropy") <= 0.5 * payload("bitmap")
    assert payload("entropy") <= 1.10 * bound
    assert payload("bitmap") == n


def test_encode_rejects_bad_input():
    with pytest.raises(CodecError, match="binary map"):
        codec.encode(torch.full((2, 2, 2), 0.5), "bitmap")
    with pytest.raises(CodecError, match="unknown format 'zip'"):
        codec.encode(torch.zeros(2, 2, 2), "zip")
    with pytest.raises(CodecError, match=r"\[C, H, W\] or \[N, C, H, W\]"):
        codec.encode(torch.zeros(4, 4), "bitmap")
    with pytest.raises(CodecError, match="channel_probs has 3 entries"):
        codec.encode(torch.zeros(2, 2, 2), "entropy", channel_probs=np.ones(3) / 2)


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan"), float("inf"), 1e-45, 1.0000001])
@pytest.mark.parametrize("fmt", ["bitmap", "sparse", "entropy", "auto"])
def test_any_non_binary_float32_value_is_refused(bad, fmt):
    x = np.zeros((4, 8, 8), np.float32)
    x[1, 2, 3], x[0, 0, 0] = 1.0, bad
    with pytest.raises(CodecError, match="binary map"):
        codec.encode(x, fmt)


@pytest.mark.parametrize("x", [np.array([[[-0.0, 1.0, 0.0]]], np.float32), np.eye(8, dtype=np.float32)[None, :, ::2]])
def test_negative_zero_and_strided_float32_maps_encode(x):
    assert x.dtype == np.float32
    for fmt in ("bitmap", "sparse", "entropy"):
        assert np.array_equal(codec.decode(codec.encode(x, fmt))[0], np.abs(x))


def with_crc(pkt: bytes) -> bytes:
    """Recompute the CRC so a mutation reaches the deeper checks."""
    head, payload = pkt[: codec.HEADER_BYTES - 4], pkt[codec.HEADER_BYTES :]
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def expect_codec_error(data: bytes) -> None:
    try:
        out = torch.from_numpy(codec.decode(data))
    except CodecError:
        return
    # A mutation may still be a valid packet; then it must decode to a binary (spike formats) or
    # byte-valued (uint8) map of the shape its header declares.
    hd = codec.read_header(data)
    assert out.dtype == torch.float32 and tuple(out.shape) == hd["shape"]
    if hd["format"] == "uint8":
        assert torch.equal(out, torch.round(out * 255) / 255)
    else:
        assert bool(((out == 0) | (out == 1)).all())


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    expect_codec_error(data)


@settings(max_examples=400, deadline=None)
@given(
    fmt=st.sampled_from(["bitmap", "sparse", "entropy", "uint8"]),
    pos=st.integers(0, 10_000),
    val=st.integers(0, 255),
    cut=st.integers(0, 10_000),
    extra=st.binary(max_size=8),
    fix_crc=st.booleans(),
    op=st.sampled_from(["flip", "truncate", "append"]),
)
def test_fuzz_mutated_packets(fmt, pos, val, cut, extra, fix_crc, op):
    x = spikes((4, 6, 6), 0.2, seed=pos)
    pkt = bytearray(codec.encode(x if fmt != "uint8" else torch.rand(4, 6, 6), fmt, timestep=3))
    if op == "flip":
        pkt[pos % len(pkt)] = val
    elif op == "truncate":
        pkt = pkt[: cut % len(pkt)]
    else:
        pkt += extra or b"\0"
    data = with_crc(bytes(pkt)) if fix_crc and len(pkt) >= codec.HEADER_BYTES else bytes(pkt)
    expect_codec_error(data)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p[:10], "truncated"),
        (lambda p: b"X" + p[1:], "bad magic"),
        (lambda p: p[:1] + b"\x09" + p[2:], "version 9 is not supported"),
        (lambda p: p[:2] + b"\x07" + p[3:], "unknown payload format code 7"),
        (lambda p: p[:3] + b"\x02" + p[4:], "invalid flags 0x2 for format bitmap"),
        (lambda p: p + b"\0", "does not match its header"),
        (lambda p: p[:-1] + bytes([p[-1] ^ 1]), "CRC32 mismatch"),
        (lambda p: with_crc(p[:8] + struct.pack("<H", 60000) * 3 + p[14:]), "exceeds"),
    ],
)
def test_malformed_packets_say_why(mutate, message):
    pkt = codec.encode(spikes((4, 6, 6), 0.2), "bitmap")
    with pytest.raises(CodecError, match=message):
        codec.decode(mutate(pkt))


def test_non_bytes_is_codec_error():
    with pytest.raises(CodecError, match="a packet is bytes"):
        codec.decode("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("n, ones", [(32, 0), (32, 1), (32, 3), (4096, 7), (5, 5), (1, 1), (70_000, 3)])
def test_sparse_packs_indices_at_log2_n_bits(n, ones):
    x = torch.zeros(n)
    x[torch.randperm(n, generator=torch.Generator().manual_seed(n))[:ones]] = 1
    pkt = codec.encode(x.view(1, 1, n) if n < 65536 else x.view(1, 10, n // 10), "sparse")
    width = max(1, (n - 1).bit_length())
    assert len(pkt) - codec.HEADER_BYTES == -(-ones * width // 8)
    assert torch.equal(torch.from_numpy(codec.decode(pkt)).view(n), x)


@pytest.mark.parametrize(
    "indices",
    [[5, 3], [4, 4], [2, 230], [*range(0, 140, 2), 3], [*range(70), 69], [*range(70), 230]],
    ids=["backward", "repeated", "outside", "backward-70", "repeated-70", "outside-70"],
)
def test_sparse_indices_out_of_order_or_outside_the_map_are_refused(indices):
    """A hand-made sparse packet (8-bit indices over a 1x1x200 map) that lists the same index
    twice, goes backwards or points past the map never decodes — with a few indices (one
    Python integer) or many (the array path)."""
    bits = np.array([[(i >> s) & 1 for s in range(7, -1, -1)] for i in indices], np.uint8).reshape(-1)
    payload = np.packbits(bits).tobytes()
    head = codec._HEADER.pack(codec.MAGIC, codec.VERSION, 1, 0, 0, 1, 1, 1, 200, len(payload))
    pkt = head + codec._CRC.pack(zlib.crc32(payload, zlib.crc32(head))) + payload
    with pytest.raises(CodecError, match="strictly increasing and inside the map"):
        codec.decode(pkt)


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 8),
    hw=st.integers(1, 6),
    rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_learned_probabilities_never_cost_more_than_auto(c, hw, rate, seed):
    """``auto`` with learned channel probabilities lets them compete: never larger, even on tiny packets."""
    g = torch.Generator().manual_seed(seed)
    rates = torch.rand(c, 1, 1, generator=g) * rate
    x = (torch.rand(c, hw, hw, generator=g) < rates).float()
    probs = codec.fit_channel_probs((torch.rand(50, c, hw, hw, generator=g) < rates).float())
    learned, plain = codec.encode(x, "auto", channel_probs=probs), codec.encode(x, "auto")
    assert len(learned) <= len(plain)
    assert torch.equal(torch.from_numpy(codec.decode(learned, channel_probs=probs)), x[None])


def test_learned_probabilities_win_on_skewed_channels():
    g = torch.Generator().manual_seed(0)
    rates = torch.tensor([0.01, 0.02, 0.5, 0.05]).view(4, 1, 1)
    train = (torch.rand(200, 4, 16, 16, generator=g) < rates).float()
    probs = codec.fit_channel_probs(train)
    x = (torch.rand(4, 16, 16, generator=g) < rates).float()
    learned = codec.encode(x, "auto", channel_probs=probs)
    assert len(learned) < len(codec.encode(x, "auto"))
    assert codec.read_header(learned)["flags"] & 1  # the learned model was the smallest


# --- the learned context format -------------------------------------------------------------


def correlated_code(T=4, shape=(2, 8, 16, 16), stay=0.9, rate=0.2, seed=0):
    """A code ``[T, N, C, H, W]`` whose bits repeat their previous value with probability ``stay``."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.02, 0.5, shape[1])[None, :, None, None] * (rate / 0.2)
    code = [(rng.random(shape) < rates).astype(np.float32)]
    for _ in range(T - 1):
        flip = rng.random(shape) > stay
        code.append(np.where(flip, (rng.random(shape) < rates).astype(np.float32), code[-1]))
    return np.stack(code)


def context_probs_of(code):
    from neucodex.entropy import context_counts, context_probs_from_counts

    return context_probs_from_counts(*context_counts(torch.from_numpy(code)))


CONTEXT_FORMATS = ("context", "context-ac")


@pytest.mark.parametrize("fmt", CONTEXT_FORMATS)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), stay=st.sampled_from([0.0, 0.5, 0.95, 1.0]), rate=st.sampled_from([0.0, 0.05, 0.4]))
def test_context_round_trip_exact_at_every_timestep(fmt, seed, stay, rate):
    code = correlated_code(T=3, shape=(1, 3, 5, 4), stay=stay, rate=rate, seed=seed)
    probs = context_probs_of(correlated_code(seed=seed + 1, shape=(4, 3, 5, 4)))
    prev = None
    for t, x in enumerate(code):
        pkt = codec.encode(x, fmt, timestep=t, context_probs=probs, previous=prev)
        out = codec.decode_packet(pkt, context_probs=probs, previous=prev)
        assert out.format == fmt and np.array_equal(out.array, x)
        prev = x


def test_context_needs_its_model_and_the_previous_map():
    x = correlated_code(T=2, shape=(1, 2, 3, 3))
    probs = context_probs_of(x)
    with pytest.raises(CodecError, match="pass context_probs"):
        codec.encode(x[0], "context")
    with pytest.raises(CodecError, match="needs the previous timestep's map"):
        codec.encode(x[1], "context", timestep=1, context_probs=probs)
    pkt = codec.encode(x[1], "context", timestep=1, context_probs=probs, previous=x[0])
    with pytest.raises(CodecError, match="pass context_probs"):
        codec.decode(pkt, previous=x[0])
    with pytest.raises(CodecError, match="needs the previous timestep's map"):
        codec.decode(pkt, context_probs=probs)
    with pytest.raises(CodecError, match=r"has shape \(2, 3\); the map needs \(3, 2\)"):
        codec.encode(x[0], "context", context_probs=np.full((3, 2), 0.5).T)
    # auto without the previous map (or without the model) skips the context format: never an error
    assert codec.read_header(codec.encode(x[1], "auto", timestep=1, context_probs=probs))["format"] != "context"


@settings(max_examples=200, deadline=None)
@given(
    pos=st.integers(0, 10_000),
    val=st.integers(0, 255),
    cut=st.integers(0, 10_000),
    extra=st.binary(max_size=8),
    op=st.sampled_from(["flip", "truncate", "append"]),
    t=st.sampled_from([0, 1]),
)
@pytest.mark.parametrize("fmt", CONTEXT_FORMATS)
def test_fuzz_context_payloads_raise_codec_error_only(fmt, pos, val, cut, extra, op, t):
    """Mutated payloads with a valid CRC (so the payload itself is what decodes): CodecError or a
    map of the declared shape, nothing else."""
    code = correlated_code(T=2, shape=(1, 4, 6, 6), seed=pos)
    probs, prev = context_probs_of(code), code[0] if t else None
    pkt = bytearray(codec.encode(code[t], fmt, timestep=t, context_probs=probs, previous=prev))
    body = pkt[codec.HEADER_BYTES :]
    if op == "flip" and body:
        body[pos % len(body)] = val
    elif op == "truncate":
        body = body[: cut % (len(body) + 1)]
    else:
        body += extra or b"\0"
    head = bytearray(pkt[: codec.HEADER_BYTES - 4])
    head[-4:] = struct.pack("<I", len(body))
    data = with_crc(bytes(head) + b"\0\0\0\0" + bytes(body))
    try:
        out = codec.decode(data, context_probs=probs, previous=prev)
    except CodecError:
        return
    assert out.shape == (1, 4, 6, 6) and set(np.unique(out)) <= {0.0, 1.0}


def test_context_never_costs_more_than_auto_and_nears_the_conditional_entropy():
    """On a temporally correlated code: auto with the context model is never larger than auto
    without it, and the context payload is within 5% of H(s_t | context) of the coded maps."""
    from neucodex.entropy import conditional_entropy, context_counts

    train = correlated_code(T=4, shape=(32, 8, 16, 16), seed=1)
    probs = context_probs_of(train)
    test = correlated_code(T=4, shape=(8, 8, 16, 16), seed=2)
    plain = learned = 0
    for b in range(test.shape[1]):
        for t in range(test.shape[0]):
            prev = test[t - 1, b] if t else None
            a = codec.encode(test[t, b], "auto", timestep=t)
            c = codec.encode(test[t, b], "auto", timestep=t, context_probs=probs, previous=prev)
            assert len(c) <= len(a)
            plain, learned = plain + len(a), learned + len(c)
    h_ctx, h_chan = conditional_entropy(*context_counts(torch.from_numpy(test)))
    payload_bits = (learned - test.shape[0] * test.shape[1] * codec.HEADER_BYTES) * 8
    assert h_ctx < 0.7 * h_chan  # the code is correlated: context helps
    assert payload_bits <= 1.05 * h_ctx + 32 * test.shape[0] * test.shape[1]  # ≤ 5% + ANS's final word
    assert learned < 0.8 * plain


def test_context_ac_codes_small_maps_to_the_bit():
    """On maps of a few hundred neurons (a rate-trained code at a deep cut) the ANS stream's final
    32-bit word is much of the packet; the arithmetic-coded format lands within 5% of H(s_t |
    context) plus at most one byte per packet, auto picks it, and it round-trips exactly. It is not
    offered above AC_MAX_ELEMENTS neurons, and refuses them by name."""
    from neucodex.entropy import conditional_entropy, context_counts

    train = correlated_code(T=4, shape=(256, 8, 4, 4), rate=0.1, seed=3)
    probs = context_probs_of(train)
    test = correlated_code(T=4, shape=(64, 8, 4, 4), rate=0.1, seed=4)
    ac = ans = 0
    for b in range(test.shape[1]):
        for t in range(test.shape[0]):
            prev = test[t - 1, b] if t else None
            pkt = codec.encode(test[t, b], "auto", timestep=t, context_probs=probs, previous=prev)
            out = codec.decode_packet(pkt, context_probs=probs, previous=prev)
            assert np.array_equal(out.array[0], test[t, b])
            ac += len(codec.encode(test[t, b], "context-ac", timestep=t, context_probs=probs, previous=prev))
            ans += len(codec.encode(test[t, b], "context", timestep=t, context_probs=probs, previous=prev))
            assert len(pkt) <= len(codec.encode(test[t, b], "auto", timestep=t))  # never more than without
    packets = test.shape[0] * test.shape[1]
    h_ctx, _ = conditional_entropy(*context_counts(torch.from_numpy(test)))
    ac_bits = (ac - packets * codec.HEADER_BYTES) * 8
    ans_bits = (ans - packets * codec.HEADER_BYTES) * 8
    assert ac_bits <= 1.05 * h_ctx + 8 * packets
    assert ac_bits < 0.8 * ans_bits  # the words ANS ends in were most of these packets
    big = correlated_code(T=2, shape=(1, 8, 16, 16))
    big_probs = context_probs_of(big)
    pkt = codec.encode(big[1], "auto", timestep=1, context_probs=big_probs, previous=big[0])
    assert codec.read_header(pkt)["format"] != "context-ac"  # 2,048 neurons: not offered
    with pytest.raises(CodecError, match="at most 1024 neurons"):
        codec.encode(big[1], "context-ac", timestep=1, context_probs=big_probs, previous=big[0])
