"""One gRPC request over raw HTTP/2 with arbitrary header bytes (HPACK literals, no Huffman).

A real gRPC client refuses to send a header value that is not valid UTF-8; an attacker need not.
"""

import socket
import struct


def _lit(name: bytes, value: bytes) -> bytes:
    def s(b):  # string literal, 7-bit prefix length (short values only)
        assert len(b) < 127
        return bytes([len(b)]) + b

    return b"\x00" + s(name) + s(value)


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def raw_call(host: str, port: int, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes, timeout=5.0) -> bytes:
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        block = b"".join(
            _lit(k, v)
            for k, v in [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", path),
                (b":authority", b"localhost"),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                *headers,
            ]
        )
        msg = b"\x00" + struct.pack(">I", len(body)) + body
        sock.sendall(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, block) + frame(0, 1, 1, msg)
        )
        out = b""
        try:
            while len(out) < 1 << 16:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        return out
    finally:
        sock.close()
